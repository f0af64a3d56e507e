"""cbm-verify checks."""

import cbm  # noqa: F401  (first: puts off import-time work GX would do, cbm._imports)
