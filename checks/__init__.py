"""cbm-verify checks."""
