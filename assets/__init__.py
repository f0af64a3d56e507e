"""cbm-verify assets."""
