"""The SageMaker PyTorch container's default handler functions and its body rules, for user handlers.

Followed from aws/sagemaker-inference-toolkit (transformer.py, decoder.py, encoder.py,
content_types.py) and aws/sagemaker-pytorch-inference-toolkit (default_pytorch_inference_handler.py),
with TorchServe's response encoding (ts/protocol/otf_message_handler.py). Where deploybench differs
on purpose it says so (README, "SageMaker handler rules"): .npy bodies are never unpickled, image
bodies are decoded by the default input_fn, an unsupported Accept is 406 (the toolkit answers 500).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploybench.inputs.payload import CROP
from deploybench.sagemaker import codecs
from deploybench.sagemaker.codecs import DECODE_ERRORS, JSON, NPY
from deploybench.sagemaker.errors import ServeError

CSV = "text/csv"
NPZ = "application/x-npz"
# The toolkit decodes exactly these to str before calling input_fn / transform_fn (content_types.
# UTF8_TYPES, compared with the whole header). TorchServe alone would decode every text/*, but the
# SageMaker PyTorch container turns that off (decode_input_request=false), so text/plain stays bytes.
UTF8_TYPES = (JSON, CSV)
ENCODED_TYPES = (JSON, CSV, NPY)  # what the default output_fn can write, in the toolkit's order
IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
MODEL_FILE = "model.pt"
TORCH_SUFFIXES = (".pt", ".pth")


def text_body(body: bytes, content_type: str | None) -> bytes | str:
    """The body as the user's input_fn / transform_fn receives it: str for UTF8_TYPES, else bytes."""
    if content_type not in UTF8_TYPES:
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ServeError(f"the {content_type} body is not UTF-8 text", 400, detail=str(exc)) from exc


def torch_model_file(model_dir: Path) -> Path:
    """model.pt, else the only .pt / .pth file at the root (the PyTorch toolkit's default_model_fn)."""
    if (model_dir / MODEL_FILE).is_file():
        return model_dir / MODEL_FILE
    found = sorted(p.name for p in model_dir.iterdir() if p.is_file() and p.suffix in TORCH_SUFFIXES)
    if len(found) != 1:
        raise ValueError(
            "without model_fn the model is the TorchScript model.pt, or the only .pt/.pth file, at the "
            f"model folder's root; found {found or 'none'}: define model_fn or keep exactly one"
        )
    return model_dir / found[0]


def default_model_fn(model_dir: str) -> Any:
    path = torch_model_file(Path(model_dir))
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{path.name}: not a TorchScript file (save it with torch.jit.save): {exc}") from exc


def decode(body: bytes | str, content_type: str | None) -> Any:
    """decoder.decode: JSON, CSV, NPY, NPZ; plus images through deploybench's reference preprocessing."""
    if content_type == JSON:
        return _array(codecs.load_json(body))
    if content_type == CSV:
        return _array_from(lambda: np.genfromtxt(io.StringIO(str(body)), delimiter=","))
    if content_type == NPY:
        return codecs.load_npy(bytes(body))
    if content_type == NPZ:
        import scipy.sparse

        return _array_from(lambda: scipy.sparse.load_npz(io.BytesIO(bytes(body))).toarray())
    if content_type in IMAGE_TYPES:
        image = np.empty((1, 3, CROP, CROP), np.float32)
        codecs.decode_into(bytes(body), content_type, image[0])
        return image
    raise ServeError(
        f"Content-Type {content_type!r} is not read by the default input_fn "
        f"(it reads {', '.join((*UTF8_TYPES, NPY, NPZ, *IMAGE_TYPES))}); define input_fn",
        415,
    )


def _array(data: object) -> np.ndarray:
    return _array_from(lambda: np.array(data))


def _array_from(make: Any) -> np.ndarray:
    try:
        return make()
    except DECODE_ERRORS as exc:
        raise ServeError("the body is not an array of numbers", 400, detail=repr(exc)) from exc


def default_input_fn(body: bytes | str, content_type: str | None) -> torch.Tensor:
    array = decode(body, content_type)
    if array.dtype.kind not in codecs.NUMERIC_KINDS:
        raise ServeError(f"array of dtype {array.dtype.str!r}; expected numbers", 400)
    if content_type in UTF8_TYPES:
        return torch.FloatTensor(array)  # as the toolkit: text bodies become float32
    return torch.from_numpy(np.ascontiguousarray(array))


def default_predict_fn(data: Any, model: Any) -> Any:
    """model.eval(), then model(data) without gradients; a deploybench variant predicts on numpy."""
    if hasattr(model, "predict") and not isinstance(model, torch.nn.Module):
        batch = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        return model.predict(np.ascontiguousarray(batch, dtype=np.float32))
    with torch.no_grad():
        model.eval()
        return model(data)


def encode(prediction: Any, content_type: str) -> bytes:
    """encoder.encode for JSON, CSV and NPY."""
    if content_type == JSON:
        return json.dumps(prediction, default=lambda x: x.tolist() if hasattr(x, "tolist") else x).encode()
    if content_type == CSV:
        text = io.StringIO()
        np.savetxt(text, np.asarray(prediction), delimiter=",", fmt="%s")
        return text.getvalue().encode()
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(prediction), allow_pickle=False)
    return buffer.getvalue()


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    if isinstance(prediction, torch.Tensor):
        prediction = prediction.detach().cpu().numpy().tolist()
    chosen = codecs.negotiate_accept(accept, ENCODED_TYPES)
    if chosen is None:
        raise ServeError(
            f"unsupported Accept {accept!r}; the default output_fn writes {list(ENCODED_TYPES)}", 406
        )
    return encode(prediction, chosen), chosen


def response_body(result: Any, accept: str) -> tuple[bytes, str]:
    """What output_fn / transform_fn returned, as TorchServe sends it: a tuple is (body, content type);
    bytes as is, str as UTF-8, a tensor through torch.save, anything else as JSON."""
    content_type = accept
    if isinstance(result, tuple):
        result, content_type = result[0], result[1]
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result), content_type
    if isinstance(result, str):
        return result.encode(), content_type
    if isinstance(result, torch.Tensor):
        buffer = io.BytesIO()
        torch.save(result, buffer)
        return buffer.getvalue(), content_type
    try:
        return json.dumps(result, indent=2).encode(), content_type
    except (TypeError, ValueError) as exc:
        raise ServeError(
            f"the handler returned a {type(result).__name__}: return bytes, str or JSON-serialisable data",
            500,
        ) from exc
