"""The warehouse as a Dagster resource: the DuckDB file of a workdir, for assets and checks."""

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import PrivateAttr

from warehouse.db import Warehouse, memory_limit


class WarehouseResource(dg.ConfigurableResource):
    """``<workdir>/warehouse.duckdb`` (``Warehouse``); one writer at a time."""

    workdir: str
    lock_wait_seconds: float = 120.0
    # DuckDB's memory limit: this, else CBM_DUCKDB_MEMORY, else warehouse.db.DEFAULT_MEMORY_LIMIT
    memory_limit: str | None = None

    _held: ExitStack | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path:
        return Path(self.workdir) / "warehouse.duckdb"

    @contextmanager
    def connect(
        self, read_only: bool = False, readers: bool = False
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """``Warehouse.connect``: ``readers`` adds the table macros (open_alerts(), ...)."""
        with self._warehouse().connect(read_only, readers) as con:
            yield con

    def _warehouse(self) -> Warehouse:
        limit = memory_limit(self.memory_limit or os.environ.get("CBM_DUCKDB_MEMORY"))
        return Warehouse(str(self.path), self.lock_wait_seconds, limit)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """For a small warehouse, one connection held open for the whole run
        (``Warehouse.held``): each step's ``connect()`` joins it. The write lock is then the
        run's from its first step to its last."""
        held = ExitStack()
        if held.enter_context(self._warehouse().held()):
            self._held = held
        else:
            held.close()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None
