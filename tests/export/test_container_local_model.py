"""The container export of a model of this machine (issue 25): the user's own SageMaker model.tar.gz,
its inference.py, its sample requests and an int8 calibration folder travel inside the export; the
entrypoint names the shipped copies and its server loads the shipped int8 artifact (nothing rebuilt),
answering exactly as the study's own server command does, with the originals gone."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from helpers.report_factory import make_trial, write_study
from helpers.sagemaker_archives import example_archive, sample_photos
from helpers.serve_support import ping, request

from deploybench.cache import KEY_FILE, TRACKED_LIBRARIES, installed_versions
from deploybench.config import ModelSpec
from deploybench.export import ExportError, export_candidate
from deploybench.export.container import entrypoint
from deploybench.export.shipped import ship_inputs
from deploybench.lifetime import die_with_parent
from deploybench.stacks.process import free_port, serve_command
from deploybench.study.spec import StudyConfig, study_model_spec

BACKEND = "onnxruntime-int8"  # calibrated on the folder: its artifact is keyed by the photos' content


def _study(tmp: Path) -> Path:
    """A study of the user's archive (handler, sample requests) with its own calibration folder."""
    from PIL import Image
    from skimage import data

    calibration = tmp / "calibration"
    calibration.mkdir()
    for name in ("chelsea", "rocket"):
        Image.fromarray(getattr(data, name)()).save(calibration / f"{name}.jpg", quality=90)
    archive, photos = example_archive(tmp), sample_photos(tmp / "photos")
    study = write_study(tmp / "study", [make_trial(BACKEND, workers=1, threads=1)])
    config = {
        "name": "local",
        "model": {"source": str(archive), "calibration_data": str(calibration)},
        "payload": str(photos),
        "content_type": "image/jpeg",
        "machine": {"label": "ci", "price_per_hour": 0.17},
    }
    (study / "study.yaml").write_text(yaml.safe_dump(config))
    environment = json.loads((study / "environment.json").read_text())
    libraries = installed_versions(TRACKED_LIBRARIES)
    (study / "environment.json").write_text(json.dumps({**environment, "libraries": libraries}))
    return study


def _answers(command: list[str], env: dict[str, str], url: str, photos: list[bytes]) -> list[object]:
    """Start a server, ask it about every photo, stop it."""
    proc = subprocess.Popen(command, env={**os.environ, **env}, preexec_fn=die_with_parent)  # noqa: PLW1509
    try:
        while ping(url) != 200:
            assert proc.poll() is None, "the server exited"
        out = []
        for body in photos:
            status, _, answer = request(f"{url}/invocations", body, {"Content-Type": "image/jpeg"})
            assert status == 200, answer
            out.append(json.loads(answer))
        return out
    finally:
        proc.terminate()
        proc.wait(30)


def _artifacts(cache: Path) -> set[Path]:
    """Every file an artifact build writes (key files and calibration digests are lookups)."""
    lookups = {KEY_FILE, "digest.txt", ".deploybench-export"}
    return {p.relative_to(cache) for p in cache.rglob("*") if p.is_file() and p.name not in lookups}


@pytest.mark.slow
def test_a_local_archive_calibrated_on_a_folder_runs_in_the_container_as_measured(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    study = _study(tmp_path)
    cache = tmp_path / "cache"
    result = export_candidate(study, tmp_path / "m.tar.gz", cache_dir=cache)
    assert (result.target, result.backend) == ("container", BACKEND)
    folder = tmp_path_factory.mktemp("opt-ml-model")  # another place than the study's model
    with tarfile.open(result.archive) as tar:
        tar.extractall(folder, filter="data")
    inputs = {p.relative_to(folder / "inputs").as_posix() for p in (folder / "inputs").rglob("*.*")}
    assert {"model/model.tar.gz", "calibration/chelsea.jpg", "payload/photos/a_cat.jpg"} <= inputs
    exec_line = next(line for line in (folder / "serve").read_text().splitlines() if line.startswith("exec "))
    assert str(tmp_path) not in exec_line and '"$MODEL_DIR"/inputs/calibration' in exec_line

    photos = [p.read_bytes() for p in sorted((tmp_path / "photos").iterdir())]
    spec = study_model_spec(StudyConfig.model_validate(yaml.safe_load((study / "study.yaml").read_text())))
    port = free_port()
    measured = serve_command(spec, make_trial(BACKEND, workers=1, threads=1).candidate, port, cache)
    expected = _answers(measured, {}, f"http://127.0.0.1:{port}", photos)

    (tmp_path / "model.tar.gz").unlink()  # only the export is left
    for original in ("model-folder", "calibration", "cache"):
        shutil.rmtree(tmp_path / original)
    served_cache, port = tmp_path / "served-cache", free_port()
    command, env = entrypoint(folder, port, "127.0.0.1", served_cache)
    got = _answers(command, env, f"http://127.0.0.1:{port}", photos)
    assert got == expected, shlex.join(command)
    assert _artifacts(served_cache) == _artifacts(folder / "cache")  # the shipped int8 model, not rebuilt


def test_an_entry_points_own_module_travels_and_an_installed_ones_is_refused(tmp_path: Path) -> None:
    shipped = ship_inputs(tmp_path, ModelSpec(source="helpers.tiny_models:tiny_cnn", weights="random"))
    assert shipped.code == "inputs/code" and (tmp_path / "inputs/code/helpers/tiny_models.py").is_file()
    assert shipped.paths == {}  # nothing else names a file of this machine
    with pytest.raises(ExportError, match="installed package"):  # not in the container's requirements
        ship_inputs(tmp_path / "other", ModelSpec(source="torchvision.models:resnet18"))
