"""Test-suite root: pytest puts this folder on sys.path, so shared helpers at the top of tests/
(sagemaker_archives.py) import the same way from every test folder."""
