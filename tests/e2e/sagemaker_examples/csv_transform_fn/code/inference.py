# transform_fn only, CSV in and out, like the scikit-learn / XGBoost style examples. No model_fn:
# the PyTorch container's default model_fn loads the TorchScript model.pt at the archive root.
import io

import numpy as np
import torch


def transform_fn(model, request_body, content_type, accept):
    if content_type != "text/csv":
        raise ValueError("This handler only reads text/csv, got {}".format(content_type))
    rows = np.loadtxt(io.StringIO(request_body), delimiter=",", ndmin=2).astype(np.float32)
    with torch.no_grad():
        scores = model(torch.from_numpy(rows)).numpy()
    out = io.StringIO()
    np.savetxt(out, scores, delimiter=",", fmt="%.6f")
    return out.getvalue(), "text/csv"
