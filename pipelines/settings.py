"""Where a deployment keeps things: one resource read by every asset."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from pipelines.registry import Registry, load_registry

DEMO_DIR = Path(".cbm/demo")


class CbmSettings(dg.ConfigurableResource):
    """Inbox, registry, workdir and publish folders, and the release's optional as-of time."""

    inbox: str
    registry: str
    workdir: str
    publish: str
    as_of: str | None = None

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
    )
