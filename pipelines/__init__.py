"""cbm-verify pipelines."""
