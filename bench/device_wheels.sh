#!/usr/bin/env bash
# Run HERE (where pip reaches the package index), in the checkout the device tool sends: fills .whl/ with
# the wheels the lent GPU machine lacks for bench/device_check.py, for its python3 (CPython 3.12,
# manylinux x86_64), and makes sure git ignores .whl/ (it then travels only when `carry` names it).
#
# The set was found by importing everything device_check reaches, the `deploybench serve` subprocess
# included, in a venv holding only what the machine has (bench/device_packages.txt lists it; the rehearsal
# is in bench/device_run.sh), and tests/test_device_scripts.py keeps it complete. Pins: constraints.txt
# where it lists the package, else the version the pinned pydantic/uvicorn resolve to here. No
# dependencies are followed (--no-deps): each wheel the machine lacks is named below.
#
#   bash bench/device_wheels.sh        # then: run(command="bash bench/device_run.sh", carry=[".whl"])
set -euo pipefail

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$ROOT"
PIP_PYTHON=${PIP_PYTHON:-python3}
MAX_MIB=40 # the whole working tree travels within 64 MiB: the wheels keep well under it

# name and fallback pin (used only where constraints.txt does not list the name); one line each
WHEELS="
pydantic 2.14.4
pydantic-core 2.50.5
annotated-types 0.8.0
typing-inspection 0.4.5
typing-extensions 4.16.0
starlette 1.10.0
uvicorn 0.54.0
httptools 0.9.0
hdrhistogram 0.10.8
"
# typing-extensions is on the machine, but pydantic 2.14 needs >=4.16 and its version there is unknown.

pinned() { # name fallback -> the constraints.txt version when listed, else the fallback
    local found
    found=$(grep -i -E "^$1==" constraints.txt | head -n1 | cut -d= -f3 || true)
    echo "${found:-$2}"
}

exclude="$(git rev-parse --path-format=absolute --git-common-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
git check-ignore -q .whl/x.whl || {
    echo "device_wheels: .whl/ is not ignored by git" >&2
    exit 1
}

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
platforms=()
for tag in manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 manylinux_2_34 \
    manylinux_2_35 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
while read -r name fallback; do
    [ -n "$name" ] || continue
    "$PIP_PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --abi cp312 --abi abi3 --abi none "${platforms[@]}" \
        -d "$staging" "$name==$(pinned "$name" "$fallback")"
done <<<"$WHEELS"

# one version of each, nothing stale: two versions of a name stop the machine's whole install
rm -rf .whl
mkdir .whl
mv "$staging"/*.whl .whl/
ls -l .whl | awk 'NR > 1 { printf "%8.1f KiB  %s\n", $5 / 1024, $9 }'
total=$(du -cb .whl/*.whl | tail -n1 | cut -f1)
travels=$( (git ls-files -z -co --exclude-standard; printf '.whl\0') | du -cb --files0-from=- 2>/dev/null |
    tail -n1 | cut -f1)
echo "wheels: $(ls .whl | wc -l) files, $((total / 1024)) KiB; the tree that travels with them:" \
    "$((travels / 1048576)) MiB of 64"
if [ "$total" -gt $((MAX_MIB * 1048576)) ]; then
    echo "device_wheels: the wheels exceed $MAX_MIB MiB" >&2
    exit 1
fi
