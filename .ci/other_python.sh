#!/usr/bin/env bash
# CI job: deploybench installs on another Python (3.13 or 3.12, whichever is here) and its torch-free
# parts work: the CLI, pricing, reports, the study spec and the Ray executor's imports.
# torch is left out on purpose: PyPI has only its multi-GB CUDA build for these Pythons, and a node
# that brings its own torch keeps it (pyproject gives ranges; constraints.txt the default set).
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
    for version in 3.13 3.12; do
        for candidate in "$HOME"/.pyenv/versions/"$version".*/bin/python"$version" "python$version"; do
            # pyenv's shims exist for every version but run only the selected ones: try it
            if "$candidate" -c "import sys" >/dev/null 2>&1; then
                command -v "$candidate"
                return
            fi
        done
    done
}

python=${OTHER_PYTHON:-$(find_python)}
if [ -z "$python" ]; then
    echo "other-python: no Python 3.12 or 3.13 on this machine; set OTHER_PYTHON" >&2
    exit 1
fi
SECONDS=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "other-python: $("$python" --version) ($python)"
"$python" -m venv "$work/venv"
echo "other-python: venv at ${SECONDS} s"
bin="$work/venv/bin"
"$python" .ci/light_requirements.py pyproject.toml >"$work/light.txt"
"$bin/pip" install --quiet -c constraints.txt -r "$work/light.txt"
"$bin/pip" install --quiet --no-deps .  # last: its torch requirement stays unmet on purpose
echo "other-python: installed at ${SECONDS} s"
"$bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
"$bin/deploybench" --help >/dev/null
"$bin/deploybench" prices --filter c7i
"$bin/deploybench" cost --throughput 304.3 --price-per-hour 0.3286
"$bin/python" -c "import ray, deploybench.study.executors.ray_cluster, deploybench.report.compare; print('ray', ray.__version__)"
"$bin/python" -m pytest -q -p no:cacheprovider tests/pricing tests/recommend tests/report tests/cli/test_report.py \
    tests/study/test_spec.py tests/study/test_store.py tests/study/test_plan.py
echo "other-python: passed in ${SECONDS} s"
