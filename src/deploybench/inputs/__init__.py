"""What goes into a model: THE reference preprocessing and sample payloads (payload.py), the
calibration and parity photo sets (calibration.py), labelled evaluation data (labelled.py), and
the other image decoders a server may run instead of Pillow (decoders.py: torch loads on first use).

Kept free of imports: PyTriton's own venv imports payload.py without torch.
"""
