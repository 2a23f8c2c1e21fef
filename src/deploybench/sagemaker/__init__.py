"""SageMaker's handler contract, one home for the loader (models/), the server (serve/) and export:
safe archive unpacking (archive.py), the handler's `context` (context.py), how code/<program>.py is
found, imported and bound (contract.py), the PyTorch toolkit's defaults (toolkit.py), the built-in
body codecs (codecs.py), the one error-body builder (errors.py), code/requirements.txt
(requirements.py), the stand-in a variant serves behind the user's handler as (standin.py), whether
it may and what the handler feeds it (handler_check.py), and how two handler answers differ (answers.py).
"""
