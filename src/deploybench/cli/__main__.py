"""`python -m deploybench.cli ...`: the same app as the `deploybench` script."""

from deploybench.cli import app

app()
