# The network lives in a sibling module of code/, imported by name (code/ is on sys.path).
import json
import os

import torch
from network import TinyNet

LABELS = ["low", "medium", "high"]


def model_fn(model_dir):
    model = TinyNet()
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), map_location="cpu"))
    model.eval()
    return model


def input_fn(request_body, request_content_type):
    assert request_content_type == "application/json"
    return torch.tensor(json.loads(request_body)["inputs"], dtype=torch.float32)


def predict_fn(input_data, model):
    with torch.no_grad():
        return model(input_data)


def output_fn(prediction, response_content_type):
    import postprocess

    scores = prediction.tolist()
    return json.dumps({"labels": [postprocess.top_label(row) for row in scores], "scores": scores})
