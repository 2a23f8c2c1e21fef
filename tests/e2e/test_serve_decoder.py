"""`deploybench serve --decoder torchvision` on loopback: the reference's top-1 on the labelled photos,
400 on bad bytes, Server-Timing's decode and preprocess spans; the GPU decoder refused without CUDA."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import TESTS, TINY
from helpers.serve_support import Server, request, serve_cli, start_server

from deploybench.backends.build import build_variant
from deploybench.config import ModelSpec
from deploybench.inputs.labelled import bundled_labelled_dir
from deploybench.inputs.payload import default_payload_path, preprocess

pytestmark = pytest.mark.slow
JPEG = {"Content-Type": "image/jpeg"}
ENV = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
MODEL = ["--model", TINY, "--weights", "random", "--backend", "eager", "--threads", "1"]
SPANS = re.compile(r"decode;dur=(?P<decode>[\d.]+), preprocess;dur=(?P<preprocess>[\d.]+)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = [*MODEL, "--max-batch-size", "4", "--max-delay-ms", "5", "--decoder", "torchvision"]
    running = start_server(tmp_path_factory.mktemp("decoder"), *args, env=ENV)
    yield running
    assert running.stop() == 0, running.log()


def _photos() -> list[Path]:
    """Three photos of each labelled class: every class, a few seconds."""
    folders = sorted(bundled_labelled_dir().iterdir())
    return [photo for folder in folders for photo in sorted(folder.glob("*.jpg"))[:3]]


def test_torchvision_serves_pillows_top1_on_the_labelled_photos(server: Server) -> None:
    variant, _ = build_variant(ModelSpec(source=TINY, weights="random"), "eager", threads=1)
    assert "runtime=dec-torchvision" in server.log()
    for photo in [default_payload_path(), *_photos()]:
        body = photo.read_bytes()
        status, headers, answer = request(f"{server.url}/invocations", body, JPEG)
        assert status == 200, answer
        expected = int(np.argmax(variant.predict(preprocess(body)[None])[0]))  # Pillow's input, in-process
        assert json.loads(answer)["predictions"][0]["index"] == expected, photo.name
        spans = SPANS.search(headers["server-timing"])
        assert spans and float(spans["decode"]) > 0 and float(spans["preprocess"]) > 0


@pytest.mark.parametrize("body", [b"not an image", default_payload_path().read_bytes()[:4000]])
def test_bad_bytes_are_a_400_never_a_500(server: Server, body: bytes) -> None:
    status, _, answer = request(f"{server.url}/invocations", body, JPEG)
    assert status == 400 and json.loads(answer)["error"] == "cannot decode the image body"


def test_the_gpu_decoder_refuses_to_start_without_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available: the GPU decoder may serve")
    result = serve_cli(*MODEL, "--decoder", "torchvision-cuda", env=ENV)
    assert result.returncode != 0
    assert "decoder torchvision-cuda needs a CUDA device" in result.stdout + result.stderr


def test_the_gate_checks_the_payload_named_on_the_command_line_first(tmp_path: Path) -> None:
    """A study's own photos reach the gate as --payload (stacks/process.py gate_args): at 800 x 600
    Pillow's JPEG draft decodes at a reduced scale and torchvision's pixels stray past 2/255."""
    from PIL import Image

    photo = tmp_path / "big-cat.jpg"
    with Image.open(default_payload_path()) as cat:
        cat.convert("RGB").resize((800, 600), Image.Resampling.BICUBIC).save(photo, "JPEG", quality=90)
    result = serve_cli(*MODEL, "--decoder", "torchvision", "--payload", str(photo), env=ENV)
    assert result.returncode != 0
    assert "decoder torchvision: pixels differ from Pillow's by" in result.stdout + result.stderr
    assert "on big-cat.jpg" in result.stdout + result.stderr
