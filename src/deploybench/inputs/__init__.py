"""What goes into a model: THE reference preprocessing and sample payloads (payload.py), the
calibration and parity photo sets (calibration.py), labelled evaluation data (labelled.py).

Kept free of imports: PyTriton's own venv imports payload.py without torch.
"""
