"""The warehouse as a Dagster resource: the DuckDB file of a workdir, for assets and checks."""

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import PrivateAttr

from warehouse.db import Warehouse, memory_limit

# below this size a run holds one connection to the warehouse for all its steps (M17)
HOLD_BELOW_BYTES = 256 * 2**20


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
        """For a small warehouse, one connection held open for the whole run: each step's
        ``connect()`` joins the database DuckDB already has open in this process, instead of
        opening the file and checkpointing it on close once per step (benchmarks/README.md,
        M17). The write lock is then the run's from its first step to its last. A large
        warehouse is opened by each step as before: there opening costs little beside the
        work, and a buffer pool kept warm between steps raised the peak memory (M17)."""
        if self.path.exists() and self.path.stat().st_size > HOLD_BELOW_BYTES:
            return
        self._held = ExitStack()
        self._held.enter_context(self._warehouse().connect())

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None
