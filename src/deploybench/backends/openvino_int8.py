"""OpenVINO int8: NNCF post-training quantisation of the fp32 IR, calibrated on real photos.

NNCF's default preset (symmetric int8 weights and activations, fast bias correction) is the one
OpenVINO's CPU plugin runs with VNNI/AMX int8 kernels. The quantised IR is cached, keyed by the
calibration set, so the slow quantisation runs once per model and machine, not per worker.
Layers NNCF leaves unquantised run in OpenVINO's default precision (bf16 where the CPU has it);
the variant reports the precision of its compute layers as read back from the compiled model.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from pathlib import Path

import numpy as np

from deploybench.backends.base import (
    Availability,
    Backend,
    BuildContext,
    Variant,
    library_importable,
    register,
)
from deploybench.backends.onnx_export import (
    artifact_dir,
    calibration_key,
    ensure_available,
    require_calibration,
)
from deploybench.backends.openvino_backend import (
    IR_FILE,
    OV_KNOBS,
    compile_ir,
    fp32_ir,
    ov_availability,
    ov_core,
    save_ir,
)
from deploybench.models.loaded import LoadedModel

NNCF_INSTALL_HINT = "pip install nncf==3.4.0"
log = logging.getLogger(__name__)


def quantize_ir(fp32_xml: Path, target_xml: Path, images: list[np.ndarray]) -> None:
    """nncf.quantize over the calibration images, one image per sample (NNCF's statistics expect that)."""
    # The library stays quiet (the CLI draws its own progress): NNCF logs each step at INFO and draws a
    # Rich progress bar on stdout; importing it makes torch warn about a missing CUDA runtime.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf

    logging.getLogger("nncf").setLevel(logging.WARNING)
    samples = [np.ascontiguousarray(image[None], dtype=np.float32) for image in images]
    progress = io.StringIO()
    with contextlib.redirect_stdout(progress):
        quantized = nncf.quantize(
            ov_core().read_model(str(fp32_xml)),
            nncf.Dataset(samples),
            subset_size=len(samples),
            fast_bias_correction=True,
        )
    log.debug("nncf.quantize: %s", progress.getvalue())
    save_ir(quantized, target_xml)


@register
class OpenVinoInt8Backend(Backend):
    name = "openvino-int8"
    precision = "int8"
    needs_calibration = True
    description = "OpenVINO CPU int8 (NNCF post-training quantisation on the calibration photos)"
    runtime_knobs = OV_KNOBS

    def availability(self) -> Availability:
        base = ov_availability()
        if not base.ok:
            return base
        if not library_importable("nncf"):
            return Availability(False, NNCF_INSTALL_HINT)
        return Availability(True)

    def build(self, model: LoadedModel, ctx: BuildContext) -> Variant:
        ensure_available(self)
        start = time.perf_counter()
        key = calibration_key(ctx, self.name)
        options = {"tool": "nncf.quantize", "preset": "default", "calibration": key}
        target = artifact_dir(model, self.name, ctx, options) / IR_FILE
        if not target.exists():  # a hit reads the int8 IR only: no fp32 IR (nor the network)
            quantize_ir(fp32_ir(model, ctx), target, require_calibration(ctx, self.name))
        return compile_ir(self.name, target, ctx, None, start)
