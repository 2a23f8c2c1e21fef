"""The lent-GPU scripts agree with each other: device_wheels.sh carries every package device_check loads
that the machine lacks, and device_run.sh installs them with the machine's own line and calls
device_check with flags it accepts (run here with a stand-in python: no GPU, no torch)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
# what the `deploybench serve` subprocess imports besides what device_check itself imports
SERVE_MODULES = (
    "deploybench.cli",
    "deploybench.serve.app",
    "deploybench.serve.worker",
    "deploybench.serve.pool",
)
# imported only when present (try/except ImportError in uvicorn.supervisors, anyio, torch.fx's drawer);
# the CPU rehearsal ran without them
OPTIONAL = {"watchfiles", "sniffio", "pydot"}
INSTALL = "-m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def carried_wheels() -> set[str]:
    """The names in device_wheels.sh's WHEELS list."""
    text = (BENCH / "device_wheels.sh").read_text()
    block = re.search(r'^WHEELS="\n(.*?)^"', text, re.S | re.M)
    assert block, "device_wheels.sh: no WHEELS list"
    return {normalise(line.split()[0]) for line in block.group(1).splitlines() if line.strip()}


def device_check_modules() -> list[str]:
    """Every deploybench module device_check imports, lazily inside its functions included."""
    tree = ast.parse((BENCH / "device_check.py").read_text())
    found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return sorted(m for m in found if m.startswith("deploybench"))


LOADED = """
import importlib, json, sys
from importlib.metadata import packages_distributions
for name in sys.argv[1:]:
    importlib.import_module(name)
from deploybench.backends import all_backends
all_backends()  # every backend module, as the check's registry lookups load them
tops = {m.partition(".")[0] for m in list(sys.modules)} - set(sys.stdlib_module_names)
dists = packages_distributions()
print(json.dumps(sorted({d for top in tops for d in dists.get(top, [])})))
"""


def test_the_wheels_cover_every_package_the_check_loads_that_the_machine_lacks() -> None:
    modules = [*device_check_modules(), *SERVE_MODULES]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-c", LOADED, *modules], capture_output=True, text=True, env=env, check=True
    ).stdout
    loaded = {normalise(d) for d in json.loads(out)} - {"deploybench"}
    lines = (BENCH / "device_packages.txt").read_text().splitlines()
    on_machine = {normalise(n) for n in lines if n.strip() and not n.startswith("#")}
    assert "pydantic" in loaded and "torch" in loaded  # the probe saw the imports at all
    missing = loaded - on_machine - carried_wheels() - OPTIONAL
    assert not missing, f"add to bench/device_wheels.sh's WHEELS: {sorted(missing)}"


def stand_in_python(tmp_path: Path) -> Path:
    """A `python` that records how it is called, succeeds at pip, and only parses device_check's flags."""
    script = tmp_path / "python"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$*" >>{tmp_path}/calls; echo "$PYTHONPATH" >{tmp_path}/pythonpath\n'
        'if [ "$1" = bench/device_check.py ]; then shift\n'
        f"  exec {sys.executable} -c \"import json, sys; sys.path.insert(0, 'bench'); import device_check;"
        ' print(json.dumps(vars(device_check.parse_args(sys.argv[1:])), default=str))" "$@"\nfi\n'
    )
    script.chmod(0o755)
    return script


def run_device_run(tmp_path: Path, *args: str, wheels: bool = True) -> subprocess.CompletedProcess[str]:
    """bench/device_run.sh from a copy of the repo's bench folder, called from elsewhere (relative root)."""
    root = tmp_path / "repo"
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(BENCH, root / "bench")
    if wheels:
        (root / ".whl").mkdir()
        (root / ".whl" / "fake-1.0-py3-none-any.whl").write_bytes(b"")
    env = {**os.environ, "PYTHON": str(stand_in_python(tmp_path)), "SITE": "/tmp/site-x"}
    env.update(OUT=str(tmp_path / "out"), PATH=f"{tmp_path}:{os.environ['PATH']}")
    return subprocess.run(
        ["bash", "repo/bench/device_run.sh", *args],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )


def test_device_run_installs_the_wheels_and_passes_flags_device_check_accepts(tmp_path: Path) -> None:
    done = run_device_run(tmp_path, "--rehearse-on-cpu")
    assert done.returncode == 0, done.stderr + done.stdout
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == f"{INSTALL} /tmp/site-x .whl/fake-1.0-py3-none-any.whl"  # the machine's own line
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed["quick"] and parsed["rehearse_on_cpu"]
    assert str(parsed["json"]) == f"{tmp_path}/out/device_check.json"
    assert (tmp_path / "out" / "device_check.log").read_text().strip()  # the log is teed into $OUT
    # absolute, so the server subprocesses find deploybench and the wheels from any working folder
    assert (tmp_path / "pythonpath").read_text().startswith(f"{tmp_path}/repo/src:/tmp/site-x")


def test_device_run_full_drops_quick_and_stops_without_wheels(tmp_path: Path) -> None:
    full = run_device_run(tmp_path / "a", "--full")
    assert full.returncode == 0, full.stderr
    assert not json.loads(full.stdout.strip().splitlines()[-1])["quick"]
    bare = run_device_run(tmp_path / "b", wheels=False)
    assert bare.returncode == 2
    assert "bench/device_wheels.sh" in bare.stderr
    assert not (tmp_path / "b" / "calls").exists()  # nothing ran
