"""The warehouse as a Dagster resource: the same DuckDB file, handed to assets and checks."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from warehouse.db import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB file of one workdir (``Warehouse``), for assets and asset checks."""

    path: str
    lock_wait_seconds: float = 120.0

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with Warehouse(self.path, self.lock_wait_seconds).connect(read_only) as con:
            yield con
