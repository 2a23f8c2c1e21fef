"""`deploybench export`: a study's chosen candidate as a SageMaker model.tar.gz, ready to deploy.

choose.py picks the trial (default: the recommended one; never one that failed parity or accuracy),
artifact.py rebuilds its variant from the artifact cache, re-checks it and lays out the archive with
a generated code/inference.py (runtimes.py: one exporter per runtime; templates/), readme.py writes
what the archive must say about itself, package.py writes the files and the tar.gz.
"""

from deploybench.export.choose import ExportError
from deploybench.export.core import ExportResult, export_candidate

__all__ = ["ExportError", "ExportResult", "export_candidate"]
