"""cbm-verify pipelines: the entry points (the cbm command, the Dagster code location)."""

import os

# first: puts off import-time work Great Expectations would do (compat/imports.py)
from compat.imports import install as _defer_import_time_work

_defer_import_time_work()

# Arrow's buffers from the system allocator, not the mimalloc pool pyarrow defaults to: in a
# fresh process mimalloc's first large allocations cost 0.3-0.4 s more for the same rows
# (the member bundle's incident rows at 1,000,000 reports; benchmarks/README.md, M28). Set
# before pyarrow is imported, as Arrow reads it once; an operator's own choice stands. The
# allocator does not touch the bytes written.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
ARROW_POOLS = ("mimalloc", "jemalloc", "system")  # what Arrow takes (cbm run refuses others)
