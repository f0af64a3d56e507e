"""cbm-verify pipelines: the entry points (the cbm command, the Dagster code location)."""

import os

# first: the collector's thresholds for the imports to come (compat/imports.py, M34). The
# deferrals of Great Expectations' import-time work are installed by ``checks``, which imports
# it: finding ``scipy.stats`` imports numpy, which a command that hands its run to a warm
# process (``pipelines.warm``) or reads a table (``cbm status``) never needs.
from compat.imports import collect_less_often as _collect_less_often

_collect_less_often()

# Arrow's buffers from the system allocator, not the mimalloc pool pyarrow defaults to: in a
# fresh process mimalloc's first large allocations cost 0.3-0.4 s more for the same rows
# (the member bundle's incident rows at 1,000,000 reports; benchmarks/README.md, M28). Set
# before pyarrow is imported, as Arrow reads it once; an operator's own choice stands. The
# allocator does not touch the bytes written.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
ARROW_POOLS = ("mimalloc", "jemalloc", "system")  # what Arrow takes (cbm run refuses others)
