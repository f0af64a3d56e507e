"""cbm-verify pipelines: the entry points (the cbm command, the Dagster code location)."""

# first: puts off import-time work Great Expectations would do (compat/imports.py)
from compat.imports import install as _defer_import_time_work

_defer_import_time_work()
