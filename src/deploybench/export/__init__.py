"""`deploybench export`: a study's chosen candidate as a model.tar.gz for a deployment target, ready
to deploy as measured.

choose.py picks the trial (default: the recommended one; never one that failed parity or accuracy),
targets.py names the targets and the one each serving stack deploys as (core.py: the default),
artifact.py rebuilds its variant from the artifact cache, re-checks it and lays out the archive with
a generated code/inference.py (runtimes.py: one exporter per runtime; templates/); one module per
target adds its own files (container.py, rayserve.py); readme.py writes what the archive must say
about itself, package.py writes the files and the tar.gz, roundtrip.py serves the archive as its
target runs it beside the trial's configuration and measures both.
"""

from deploybench.export.choose import ExportError
from deploybench.export.core import ExportResult, export_candidate

__all__ = ["ExportError", "ExportResult", "export_candidate"]
