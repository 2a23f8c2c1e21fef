"""SageMaker model archives shaped like AWS's public PyTorch image-classification example.

`code/inference.py` loads a ResNet from `model.pth` in model_fn, decodes JPEGs with PIL and
torchvision transforms in input_fn, and answers JSON top-5 from output_fn. The net is ResNet-18's
shape at a quarter of its width (torchvision BasicBlocks, one per stage, 10 classes) on 64x64
crops, so tests stay fast; its BatchNorm statistics are set on random images, so its logits are
not degenerate.
"""

from __future__ import annotations

import tarfile
import textwrap
from functools import cache
from pathlib import Path

import torch

from deploybench.inputs.payload import default_payload_path

HEADER = '''
import io
import json
import os

import torch
import torchvision.transforms as T
from PIL import Image
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CLASSES = [f"class_{i}" for i in range(10)]
transform = T.Compose([
    T.Resize(72),
    T.CenterCrop(64),
    T.ToTensor(),
    T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])


class SmallResNet(nn.Module):
    """ResNet-18's shape (stem, four stages of BasicBlocks, global pool, fc) at a quarter of its width."""

    def __init__(self, num_classes=len(CLASSES), widths=(16, 32, 64, 128)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 7, 2, 3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks, inplanes = [], widths[0]
        for index, planes in enumerate(widths):
            stride = 1 if index == 0 else 2
            down = None
            if stride != 1:
                down = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
            blocks.append(BasicBlock(inplanes, planes, stride, down))
            inplanes = planes
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


def build_net():
    return SmallResNet()
'''

MODEL_FN = """
def model_fn(model_dir):
    model = build_net()
    with open(os.path.join(model_dir, "model.pth"), "rb") as f:
        model.load_state_dict(torch.load(f, map_location=device))
    return model.to(device).eval()
"""

INPUT_FN = """
def input_fn(request_body, request_content_type):
    if request_content_type in ("image/jpeg", "application/x-image"):
        image = Image.open(io.BytesIO(request_body)).convert("RGB")
        return transform(image).unsqueeze(0)
    raise ValueError(f"unsupported content type: {request_content_type}")
"""

PREDICT_FN = """
def predict_fn(input_data, model):
    with torch.no_grad():
        return model(input_data.to(device))
"""

OUTPUT_FN = """
def output_fn(prediction, content_type):
    probabilities = torch.nn.functional.softmax(prediction[0], dim=0)
    top = torch.topk(probabilities, 5)
    answer = [{"class": CLASSES[i], "probability": float(p)} for p, i in zip(top.values, top.indices)]
    return json.dumps(answer), "application/json"
"""

SOFTMAX_PREDICT_FN = """
def predict_fn(input_data, model):
    with torch.no_grad():
        return torch.nn.functional.softmax(model(input_data), dim=1)
"""

DICT_MODEL_FN = """
def model_fn(model_dir):
    model = build_net()
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pth")))
    return {"model": model.eval(), "classes": CLASSES}
"""


@cache
def _weights() -> dict[str, torch.Tensor]:
    namespace: dict[str, object] = {}
    exec(compile(HEADER, "inference.py", "exec"), namespace)  # the very class the handler defines
    torch.manual_seed(0)
    net = namespace["build_net"]()  # type: ignore[operator]
    net.train()
    with torch.no_grad():
        net(torch.randn(32, 3, 64, 64))
    return net.state_dict()


def small_resnet() -> torch.nn.Module:
    """The archive's network with reproducible weights and BatchNorm statistics of random images."""
    namespace: dict[str, object] = {}
    exec(compile(HEADER, "inference.py", "exec"), namespace)
    net = namespace["build_net"]()  # type: ignore[operator]
    net.load_state_dict(_weights())
    return net.eval()


def write_model_folder(folder: Path, *functions: str) -> Path:
    """model.pth + code/inference.py (HEADER plus the given functions) in `folder`."""
    (folder / "code").mkdir(parents=True, exist_ok=True)
    torch.save(_weights(), folder / "model.pth")
    source = HEADER + "".join(textwrap.dedent(fn) for fn in functions)
    (folder / "code" / "inference.py").write_text(source)
    return folder


def pack(folder: Path, archive: Path) -> Path:
    """folder -> model.tar.gz with the folder's content at the archive root (SageMaker's layout)."""
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:  # float weights barely compress
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return archive


def example_archive(tmp: Path, *functions: str, name: str = "model") -> Path:
    """The public example's four functions by default; pass others to vary it."""
    chosen = functions or (MODEL_FN, INPUT_FN, PREDICT_FN, OUTPUT_FN)
    folder = write_model_folder(tmp / f"{name}-folder", *chosen)
    return pack(folder, tmp / f"{name}.tar.gz")


def sample_photos(folder: Path) -> Path:
    """Three JPEG request bodies: the bundled cat and two of scikit-image's photos, re-encoded."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a_cat.jpg").write_bytes(default_payload_path().read_bytes())
    Image.fromarray(data.coffee()).save(folder / "b_coffee.jpg", quality=90)
    Image.fromarray(data.astronaut()).save(folder / "c_astronaut.jpg", quality=90)
    return folder


# The handler shapes people write (issue 24): each runs unchanged with a variant standing in.
PIL_INPUT_FN = """
def input_fn(request_body, content_type):
    return Image.open(io.BytesIO(request_body)).convert("RGB")
"""

TRANSFORMS_PREDICT_FN = """
def predict_fn(image, model):
    batch = transform(image).unsqueeze(0).to(device)
    model.eval()
    with torch.no_grad():
        return model(batch)
"""

TOPK_DICT_PREDICT_FN = """
def predict_fn(input_data, model):
    with torch.no_grad():
        probabilities = torch.nn.functional.softmax(model(input_data.to(device)), dim=1)[0]
    top = torch.topk(probabilities, 5)
    return {"labels": [CLASSES[i] for i in top.indices.tolist()], "scores": top.values.tolist()}
"""

JSON_OUTPUT_FN = """
def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""

BASE64_LIST_INPUT_FN = """
import base64


def input_fn(request_body, content_type):
    if content_type != "application/json":
        raise ValueError(f"unsupported content type: {content_type}")
    images = json.loads(request_body)["instances"]
    return [Image.open(io.BytesIO(base64.b64decode(item["b64"]))).convert("RGB") for item in images]
"""

BASE64_LIST_PREDICT_FN = """
def predict_fn(images, model):
    batch = torch.stack([transform(image) for image in images]).to(device)
    with torch.no_grad():
        probabilities = torch.softmax(model(batch), dim=1)
    best = probabilities.argmax(dim=1)
    return [
        {"class": CLASSES[i], "probability": float(probabilities[n, i])} for n, i in enumerate(best.tolist())
    ]
"""

TTA_PREDICT_FN = """
def predict_fn(input_data, model):
    with torch.no_grad():
        return (model(input_data) + model(torch.flip(input_data, dims=[3]))) / 2
"""

TRANSFORM_FN = """
def transform_fn(model, request_body, content_type, accept):
    image = Image.open(io.BytesIO(request_body)).convert("RGB")
    with torch.no_grad():
        logits = model(transform(image).unsqueeze(0))
    top = torch.topk(torch.softmax(logits, dim=1)[0], 3)
    answer = [{"class": CLASSES[i], "score": round(float(p), 6)} for p, i in zip(top.values, top.indices)]
    return json.dumps(answer), accept
"""

TORCHSCRIPT_MODEL_FN = """
def model_fn(model_dir):
    return torch.jit.load(os.path.join(model_dir, "model.pt"), map_location="cpu").eval()
"""

READS_FC_PREDICT_FN = """
def predict_fn(input_data, model):
    with torch.no_grad():
        pooled = nn.functional.adaptive_avg_pool2d(model.blocks(model.stem(input_data)), 1)
        return model.fc(torch.flatten(pooled, 1))
"""

HALF_PREDICT_FN = """
def predict_fn(input_data, model):
    with torch.no_grad():
        return model.half()(input_data.half()).float()
"""


def write_torchscript(folder: Path) -> Path:
    """model.pt: the small network traced, as the PyTorch toolkit's default model_fn loads it."""
    traced = torch.jit.trace(small_resnet(), torch.rand(1, 3, 64, 64))
    torch.jit.save(traced, str(folder / "model.pt"))
    return folder


def base64_request(*bodies: bytes) -> bytes:
    """A JSON request carrying several images, base64-encoded (the list-of-images handler's format)."""
    import base64
    import json

    return json.dumps({"instances": [{"b64": base64.b64encode(b).decode()} for b in bodies]}).encode()
