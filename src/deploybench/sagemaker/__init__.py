"""SageMaker's handler contract, one home for the loader (models/), the server (serve/) and export:
safe archive unpacking (archive.py), the handler's `context` (context.py), how code/<program>.py is
found, imported and bound (contract.py), the PyTorch toolkit's defaults (toolkit.py), the built-in
body codecs (codecs.py), the one error-body builder (errors.py), code/requirements.txt
(requirements.py), and whether a variant may stand in for a handler's predict_fn (handler_check.py).
"""
