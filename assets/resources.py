"""Where a deployment keeps things: one resource read by every asset."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from cbm.registry import Registry, load_registry

DEMO_DIR = Path(".cbm/demo")


class CbmSettings(dg.ConfigurableResource):
    """Inbox, registry, workdir and publish folders, and the release's optional as-of time."""

    inbox: str
    registry: str
    workdir: str
    publish: str
    as_of: str | None = None
    # stored GX validation results kept per suite and table (older ones and their Data Docs
    # pages are removed: the Data Docs index slows down with every one it lists)
    gx_keep_results: int = 30

    @property
    def landing_dir(self) -> Path:
        return Path(self.workdir) / "landing"

    @property
    def staged_dir(self) -> Path:
        return Path(self.workdir) / "staged"

    @property
    def warehouse_path(self) -> Path:
        return Path(self.workdir) / "warehouse.duckdb"

    @property
    def gx_dir(self) -> Path:
        return Path(self.workdir) / "gx"

    def load_registry(self) -> Registry:
        return load_registry(self.registry)


def settings_from_env() -> CbmSettings:
    """Settings from CBM_* variables; defaults point at the project-local demo folders."""
    base = DEMO_DIR.resolve()
    return CbmSettings(
        inbox=os.environ.get("CBM_INBOX", str(base / "inbox")),
        registry=os.environ.get("CBM_REGISTRY", str(base / "registry")),
        workdir=os.environ.get("CBM_WORKDIR", str(base / "work")),
        publish=os.environ.get("CBM_PUBLISH", str(base / "publish")),
        as_of=os.environ.get("CBM_AS_OF") or None,
        gx_keep_results=gx_keep_results_from_env(),
    )


def gx_keep_results_from_env() -> int:
    """``CBM_GX_KEEP_RESULTS`` (default 30): GX validation results kept per suite and table."""
    text = os.environ.get("CBM_GX_KEEP_RESULTS", "30")
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"CBM_GX_KEEP_RESULTS must be a whole number >= 1, not {text!r}")
    return int(text)
