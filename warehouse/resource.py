"""The warehouse as a Dagster resource: the DuckDB file of a workdir, for assets and checks."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from warehouse.db import Warehouse, memory_limit


class WarehouseResource(dg.ConfigurableResource):
    """``<workdir>/warehouse.duckdb`` (``Warehouse``); one writer at a time."""

    workdir: str
    lock_wait_seconds: float = 120.0
    # DuckDB's memory limit: this, else CBM_DUCKDB_MEMORY, else warehouse.db.DEFAULT_MEMORY_LIMIT
    memory_limit: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.workdir) / "warehouse.duckdb"

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        limit = memory_limit(self.memory_limit or os.environ.get("CBM_DUCKDB_MEMORY"))
        with Warehouse(str(self.path), self.lock_wait_seconds, limit).connect(read_only) as con:
            yield con
