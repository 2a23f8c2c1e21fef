# All four handler functions, each taking the context (SageMaker PyTorch toolkit >= 2.0 passes it to
# functions declaring one more parameter). Postponed annotations plus a dataclass: this only imports
# when the module is registered in sys.modules under its own name.
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field

import torch

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


@dataclass
class Scaler:
    factor: float
    seen: list[str] = field(default_factory=list)


def model_fn(model_dir, context):
    with open(os.path.join(model_dir, "factor.json")) as f:
        factor = json.load(f)["factor"]
    assert context.system_properties["model_dir"] == model_dir
    return Scaler(factor)


def input_fn(request_body, request_content_type, context):
    if request_content_type not in ("application/json", None):  # our own clients may omit it
        raise ValueError(f"unsupported content type {request_content_type!r}")
    payload = json.loads(request_body)
    return {
        "values": torch.tensor(payload["values"]),
        "body_type": type(request_body).__name__,
        "content_type": request_content_type,
    }


def predict_fn(input_data, model, context):
    pickle.loads(pickle.dumps(model))  # picklable: the class lives in an importable module
    return {
        "scaled": (input_data["values"] * model.factor).tolist(),
        "body_type": input_data["body_type"],
        "content_type": input_data["content_type"],
    }


def output_fn(prediction, accept, context):
    attributes = context.get_request_header(0, CUSTOM_ATTRIBUTES)
    if attributes:
        context.set_response_header(0, CUSTOM_ATTRIBUTES, f"echo={attributes}")
    prediction["custom_attributes"] = attributes
    return json.dumps(prediction), accept
