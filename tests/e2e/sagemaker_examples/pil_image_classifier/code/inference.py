# An image classifier as the SageMaker examples write one: PIL decodes, torchvision transforms,
# softmax in output_fn. The tiny CNN stands in for a torchvision backbone.
import io
import json
import logging
import os

import torch
import torch.nn as nn
import torchvision.transforms as transforms
from PIL import Image

logger = logging.getLogger(__name__)

CLASSES = ["cat", "dog", "bird", "fish"]
preprocess = transforms.Compose(
    [
        transforms.Resize(40),
        transforms.CenterCrop(32),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ]
)


def build_net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, len(CLASSES)),
    )


def model_fn(model_dir):
    model = build_net()
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), map_location="cpu"))
    return model.eval()


def input_fn(request_body, content_type="application/x-image"):
    if content_type in ("application/x-image", "image/jpeg", "image/png"):
        image = Image.open(io.BytesIO(request_body)).convert("RGB")
        return preprocess(image).unsqueeze(0)
    raise ValueError("Unsupported content type: {}".format(content_type))


def predict_fn(input_data, model):
    with torch.no_grad():
        return torch.softmax(model(input_data), dim=1)


def output_fn(prediction, content_type="application/json"):
    probabilities = prediction[0].tolist()
    best = max(range(len(probabilities)), key=probabilities.__getitem__)
    return json.dumps({"label": CLASSES[best], "probabilities": probabilities})
