"""Test-suite root: pytest puts this folder on sys.path, so shared helpers at the top of tests/
(sagemaker_examples.py) import the same way from every test folder."""
