#!/usr/bin/env bash
# Run THERE, on the lent GPU machine, as the one command a session gives the device tool:
#
#   run(command="bash bench/device_run.sh", carry=[".whl"], timeout_s=540)
#
# Installs the wheels bench/device_wheels.sh put in .whl/ (the machine has no network) into /tmp/site,
# prints the GPU and the versions, then runs bench/device_check.py under `timeout`, its log teed to
# $OUT/device_check.log and its report in $OUT/device_check.json (rewritten after each step, so a run
# cut short still brings back what it measured). Arguments go to device_check.py; the default is
# --quick (about 3 minutes on an H100: see its docstring), --full drops it.
#
# Rehearsed here, on the CPU, with the machine's packages alone (bench/device_wheels.sh's header):
#   PYTHON=/tmp/devsim/bin/python SITE=/tmp/devsite OUT=/tmp/devout bash bench/device_run.sh --rehearse-on-cpu
# where /tmp/devsim holds the machine's packages alone (bench/device_packages.txt), e.g.
#   python3.12 -m venv /tmp/devsim && /tmp/devsim/bin/pip install torch==2.11.0 torchvision==0.26.0 \
#       onnxruntime==1.30.0 onnx==1.23.1 onnxscript numpy==2.5.2 pillow aiohttp typer rich psutil pyyaml \
#       jinja2 pandas scipy scikit-image uvloop packaging click \
#     && /tmp/devsim/bin/pip uninstall -y pydantic pydantic-core annotated-types typing-inspection
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2 # the repo root, however the script was named
ROOT=$PWD
PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
OUT=${OUT:-$ROOT/device-out}
LIMIT_S=${LIMIT_S:-450} # killed after 7.5 minutes; device_check starts no step after --deadline-s
DEADLINE_S=${DEADLINE_S:-390}
mkdir -p "$OUT"

shopt -s nullglob
wheels=(.whl/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
    echo "device_run: no wheels in $ROOT/.whl: run 'bash bench/device_wheels.sh' where pip works," \
        "then name .whl in the run's carry" >&2
    exit 2
fi
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "${wheels[@]}" || {
    echo "device_run: installing ${#wheels[@]} wheels from .whl into $SITE failed" >&2
    exit 3
}
# absolute: the server subprocesses (and their workers) inherit it whatever their working folder
export PYTHONPATH="$ROOT/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null ||
    echo "nvidia-smi: no GPU answered"
"$PYTHON" -c 'import sys, torch, torchvision
print(f"python {sys.version.split()[0]} at {sys.executable}; torch {torch.__version__},"
      f" torchvision {torchvision.__version__}, CUDA {torch.version.cuda},"
      f" cuda available {torch.cuda.is_available()}")'

quick=(--quick)
args=()
for arg in "$@"; do
    if [ "$arg" = --full ]; then quick=(); else args+=("$arg"); fi
done
timeout -k 15 "$LIMIT_S" "$PYTHON" bench/device_check.py --json "$OUT/device_check.json" \
    --deadline-s "$DEADLINE_S" "${quick[@]}" "${args[@]}" 2>&1 | tee "$OUT/device_check.log"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 124 ] && echo "device_run: device_check.py passed its ${LIMIT_S} s limit and was stopped"
exit "$rc"
