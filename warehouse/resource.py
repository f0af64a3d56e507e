"""The warehouse as a Dagster resource: the DuckDB file of a workdir, for assets and checks."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from warehouse.db import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """``<workdir>/warehouse.duckdb`` (``Warehouse``); one writer at a time."""

    workdir: str
    lock_wait_seconds: float = 120.0

    @property
    def path(self) -> Path:
        return Path(self.workdir) / "warehouse.duckdb"

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with Warehouse(str(self.path), self.lock_wait_seconds).connect(read_only) as con:
            yield con
