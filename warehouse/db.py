"""The DuckDB warehouse: one file under the workdir, one writer at a time.

``Warehouse.connect()`` opens the file, creates the schema when missing and waits (with a
clear message) while another process holds the write lock.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata, resources
from pathlib import Path

import duckdb

from cbm.contract import (
    FIELDS,
    KINDS,
    MAX_PUBLISHABLE_TLP_RANK,
    SQL_TYPES,
    TLP_LEVELS,
    typed_fields,
)
from warehouse.queries import Sql, query

PROVENANCE = {"submission_sha": "VARCHAR", "row_number": "BIGINT", "source": "VARCHAR"}
# Anonymised rows also carry why a row could not be read, and (attestations) the subject's
# code as handed in, so a quarantine reason can say which code was wrong.
ANON_EXTRAS = {"row_error": "VARCHAR"}
ANON_EXTRAS_BY_KIND = {"attestations": {"subject_party__code": "VARCHAR"}}
# Last (added to older warehouses' tables at the end): where a STIX row's object came from
# (cbm.readers.ORIGIN), for the rule that quarantines this deployment's own releases.
ANON_ORIGIN = {"row_origin": "VARCHAR"}


# DuckDB's memory limit for the warehouse (its own default is 80 % of the machine's memory).
# Joins, sorts and aggregates beyond it spill to ``<warehouse>.tmp``: the run's peak is lower
# in about the same time (benchmarks/README.md, "Memory" and M13).
DEFAULT_MEMORY_LIMIT = "1.5GiB"


def memory_limit(value: str | None) -> str:
    """DuckDB's memory limit for the warehouse: ``value`` (``CBM_DUCKDB_MEMORY`` or a setting),
    ``DEFAULT_MEMORY_LIMIT`` when unset. ``ValueError``, naming the value, unless DuckDB takes
    it (an amount such as 2GiB or 1500MB, or a share of the machine's memory such as 25%)."""
    if value is None or not str(value).strip():
        return DEFAULT_MEMORY_LIMIT
    return _checked_memory_limit(str(value).strip())


@functools.lru_cache(maxsize=8)  # every connection of a run asks again
def _checked_memory_limit(text: str) -> str:
    try:
        if "'" in text or text.startswith("-"):  # DuckDB reads a negative one as no limit
            raise duckdb.InvalidInputException(text)
        with duckdb.connect() as con:  # DuckDB's own parser, so what passes here passes there
            con.execute(f"SET memory_limit = '{text}'")
    except duckdb.Error:
        raise ValueError(
            f"CBM_DUCKDB_MEMORY={text!r}: DuckDB's memory limit, an amount such as 2GiB or "
            "1500MB, or a share of this machine's memory such as 25% (DuckDB's own default: 80%)"
        ) from None
    return text


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse's write lock for longer than we wait."""


class WarehouseOutOfMemory(RuntimeError):
    """DuckDB needed more than the warehouse's memory limit and could not spill it; one line
    naming the limit and how to raise it (DuckDB's own message ends with general advice)."""

    def __init__(self, limit: str, error: duckdb.OutOfMemoryException):
        first = str(error).strip().splitlines()[0]
        detail = first.partition("Out of Memory Error: ")[2] or first
        super().__init__(
            f"DuckDB ran out of memory within the warehouse's limit (CBM_DUCKDB_MEMORY={limit}): "
            f"{detail}; raise CBM_DUCKDB_MEMORY "
            '(docs/operations.md, "Memory")'
        )


@functools.cache  # the package's own files: read once per process
def sql_file(name: str) -> str:
    """The text of ``warehouse/sql/<name>.sql``."""
    return resources.files("warehouse").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def indicator_catalogue() -> list[dict]:
    """The indicator catalogue: one entry per SQL file in ``warehouse/sql/indicators``."""
    import yaml

    path = resources.files("warehouse").joinpath("sql", "indicators", "catalogue.yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def indicator_sql(name: str) -> str:
    return sql_file(f"indicators/{name}")


def report_columns(kind: str, with_raw: bool) -> dict[str, str]:
    cols = dict(PROVENANCE)
    cols |= {f: SQL_TYPES[t] for f, t in FIELDS[kind].items()}
    if with_raw:
        cols |= {f"{f}__raw": "VARCHAR" for f in typed_fields(kind)}
        cols |= ANON_EXTRAS | ANON_EXTRAS_BY_KIND.get(kind, {}) | ANON_ORIGIN
    return cols


# how each contract type is read from text: macros of warehouse/sql/schema.sql
READ_MACRO = {"int": "read_int", "float": "read_float", "ts": "read_ts"}


def anon_insert_sql(kind: str) -> str:
    """INSERT from the registered frame ``anon_frame`` (with its submission in ``_sha``) into
    ``anon_<kind>``, casting typed fields."""
    select = []
    for col in report_columns(kind, with_raw=True):
        if col.endswith("__raw"):
            select.append(f'"{col[:-5]}" AS "{col}"')
        elif col in FIELDS[kind]:
            macro = READ_MACRO.get(FIELDS[kind][col])
            select.append(f'{macro}("{col}") AS "{col}"' if macro else f'"{col}"')
        elif col == "submission_sha":
            select.append("_sha AS submission_sha")
        else:
            select.append(f'"{col}"')
    return f"INSERT INTO anon_{kind} SELECT {', '.join(select)} FROM anon_frame"


def _create_table(name: str, cols: dict[str, str]) -> str:
    body = ",\n  ".join(f'"{c}" {t}' for c, t in cols.items())
    return f"CREATE TABLE IF NOT EXISTS {name} (\n  {body}\n);"


def tlp_macros() -> str:
    """``tlp_rank(tlp)`` (0 = CLEAR ... an unknown level ranks as RED) and
    ``tlp_publishable(rank)``, from the contract's TLP levels: the one place SQL learns them."""
    cases = " ".join(f"WHEN '{t}' THEN {i}" for i, t in enumerate(TLP_LEVELS))
    return (
        f"CREATE OR REPLACE MACRO tlp_rank(t) AS CASE t {cases} ELSE {len(TLP_LEVELS) - 1} END;\n"
        f"CREATE OR REPLACE MACRO tlp_publishable(r) AS r <= {MAX_PUBLISHABLE_TLP_RANK};\n"
        f"CREATE OR REPLACE MACRO max_publishable_rank() AS {MAX_PUBLISHABLE_TLP_RANK};\n"
        # the escalation level (0-5) of a severity-weighted sum against the agreed thresholds
        "CREATE OR REPLACE MACRO escalation_of(total, thresholds) AS "
        "len(list_filter(thresholds, lambda x: total >= x));"
    )


def schema_ddl() -> str:
    """The whole current schema: its tables, then its views."""
    return tables_ddl() + "\n" + views_ddl()


@functools.cache
def tables_ddl() -> str:
    """The tables of the current schema, each created where missing (a warehouse made before
    a column was added gets it from its numbered migration, warehouse/sql/migrations/)."""
    parts = [tlp_macros(), sql_file("schema")]
    for kind in KINDS:
        # anonymised: every staged row, typed where it parses, raw text kept for the checks.
        parts.append(_create_table(f"anon_{kind}", report_columns(kind, with_raw=True)))
        # accepted: rows that passed validation; all versions kept.
        parts.append(_create_table(f"reports_{kind}", report_columns(kind, with_raw=False)))
        parts.append(query("warehouse.superseded_table", kind=kind) + ";")
    return "\n".join(parts)


@functools.cache
def views_ddl() -> str:
    """The views over the tables, made again on a process's first connection to a warehouse
    not yet at this code's schema (``schema_current``)."""
    # submission_copies first: the report views leave out the rows of a submission that
    # became a copy after it was accepted (a signed original arrived later)
    parts = [sql_file("submission_copies")]
    parts += [query("warehouse.kind_views", kind=kind) + ";" for kind in KINDS]
    parts.append(query("warehouse.report_views") + ";")
    parts += [sql_file(view) for view in VIEWS]
    return "\n".join(parts)


# Views over the stored tables, created with the schema: one SQL file each, named after it.
VIEWS = ("submissions", "quarantine")
# Table macros that read them (open_alerts(): what "unacknowledged" means;
# quarantine_listing(party, rule): what is listed as quarantined): made on each connection that
# asks for them (``connect(readers=True)``), as temporary macros, so a read-only connection to a
# warehouse made before them has them too, and none is stored in the file. Not on the others:
# 4 ms a connection, about 50 connections a cbm run (benchmarks/README.md, M25).
READERS = ("open_alerts", "quarantine_listing")


@functools.cache
def readers_ddl() -> str:
    return "\n".join(sql_file(name) for name in READERS)


def content_hash_sql(kind: str) -> str:
    """SQL for the hash of a report's contract fields: two copies of one version with
    different content differ here (whatever file or row they came in)."""
    fields = ", ".join(f'CAST("{f}" AS VARCHAR)' for f in FIELDS[kind])
    return f"md5(concat_ws(chr(31), {fields}))"


def refresh_superseded(con: duckdb.DuckDBPyConnection, kind: str, shas: list[str]) -> None:
    """Re-rank the versions of every report that rows of these submissions belong to (after
    their rows were deleted from or added to ``reports_<kind>``); other reports keep theirs.

    First the version conflicts of those reports: the same report_id and version from one
    source with different content. Every such copy is set aside (quarantined), whatever
    order it arrived in, and the highest version without a conflict is current."""
    con.execute(query("warehouse.touched_reports", kind=kind), {"shas": shas})
    con.execute(query("warehouse.forget_rank", kind=kind))
    con.execute(query("warehouse.rank", kind=kind, content_hash=Sql(content_hash_sql(kind))))


def connection_config() -> dict[str, str]:
    """DuckDB config identical to what duckdb_engine (Great Expectations' way in) opens with.

    DuckDB refuses a second connection to the same file in one process with a different
    configuration; duckdb_engine sets ``custom_user_agent``. Our own connections use the same
    value so the warehouse and GX can share the database instance. The versions come from the
    package metadata: importing duckdb_engine would import SQLAlchemy for quick commands too.
    """
    return {"custom_user_agent": _user_agent()}


@functools.cache  # read from the installed packages' metadata once per process
def _user_agent() -> str:
    engine, sqla = metadata.version("duckdb_engine"), metadata.version("sqlalchemy")
    return f"duckdb_engine/{engine}(sqlalchemy/{sqla})"


# below this size a run holds one connection to the warehouse for all its steps (M17)
HOLD_BELOW_BYTES = 256 * 2**20


# What each connection sets for itself (a cursor made from it does not inherit it: a time
# zone of Etc/UTC instead of UTC changes the Arrow type, and so a Parquet file's bytes)
SESSION = "SET TimeZone = 'UTC'"


def thread_cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A connection of its own to ``con``'s database, for another thread (a DuckDB connection
    is not shared between threads), set as ``con`` is (``SESSION``). The caller closes it."""
    cursor = con.cursor()
    cursor.execute(SESSION)
    return cursor


@dataclass(frozen=True)
class Warehouse:
    """The DuckDB file of one workdir."""

    path: str
    lock_wait_seconds: float = 120.0
    memory_limit: str = DEFAULT_MEMORY_LIMIT  # checked by ``memory_limit()``

    @contextmanager
    def connect(
        self, read_only: bool = False, readers: bool = False
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse, its schema current (unless ``read_only``);
        ``readers``: with the table macros ``open_alerts()`` and ``quarantine_listing()``."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = _connect_waiting(self.path, read_only, self.lock_wait_seconds)
        try:
            con.execute(SESSION)
            # for the whole database instance, so GX's connections to it keep the limit too
            con.execute(f"SET memory_limit = '{self.memory_limit}'")
            if not read_only:
                _ensure_schema(con, self.path)
            if readers:
                con.execute(readers_ddl())
            yield con
        except duckdb.OutOfMemoryException as exc:  # said the same in `cbm run` and the UI
            raise WarehouseOutOfMemory(self.memory_limit, exc) from exc
        finally:
            con.close()

    @contextmanager
    def held(self) -> Iterator[bool]:
        """For a small warehouse, one connection held open for the block: each ``connect()``
        in this process then joins the database DuckDB already has open, instead of opening
        the file and checkpointing it on close (about 20 ms each: benchmarks/README.md, M17,
        M25). The write lock is this process's for the whole block. A large warehouse is not
        held: opening costs little beside its work, and a buffer pool kept warm between steps
        raised the peak memory (M17). Yields whether it holds it."""
        path = Path(self.path)
        if path.exists() and path.stat().st_size > HOLD_BELOW_BYTES:
            yield False
            return
        with self.connect():
            yield True


# Databases whose schema this process has created: (path, inode) so a file that is deleted
# and made anew gets its schema again. Saves re-running the DDL on every connection.
_SCHEMA_DONE: set[tuple[str, int]] = set()


def _ensure_schema(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """The current schema, and the warehouse's version with it (warehouse/migrations.py):
    missing tables created, pending migrations run in number order, the views made again.
    Skipped where the warehouse was last brought to this very schema (``schema_current``)."""
    from warehouse.migrations import apply_pending, is_new

    key = (str(Path(path).resolve()), Path(path).stat().st_ino)
    if key in _SCHEMA_DONE:
        return
    if not schema_current(con):
        new = is_new(con)
        if not new:
            migrate_single_writer_tables(con)  # from before versioning: version 0
        con.execute(tables_ddl())
        apply_pending(con, new)
        con.execute(views_ddl())
        con.execute(query("warehouse.record_schema_state"), [schema_fingerprint()])
    _SCHEMA_DONE.add(key)


@functools.cache
def schema_fingerprint() -> str:
    """A digest of the schema this code makes: DuckDB's version, the tables' and views' DDL
    and the migrations' names."""
    from warehouse.migrations import migrations

    names = [name for _, name, _ in migrations()]
    text = "\n".join([duckdb.__version__, tables_ddl(), views_ddl(), *names])
    return hashlib.sha256(text.encode()).hexdigest()


def schema_current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the warehouse was last brought to this code's schema (``schema_fingerprint``)
    with every migration recorded: then its tables, views and macros are those the DDL would
    make, and a process's first connection need not run it again (about 0.1 s, M52)."""
    from warehouse.migrations import migrations

    try:  # fetchall: a result left unread keeps its transaction open, and the connection
        # may be held open for a whole cbm run (``Warehouse.held``), where CHECKPOINT needs none
        ((fingerprint, recorded),) = con.execute(query("warehouse.schema_state")).fetchall()
    except duckdb.CatalogException:  # a new warehouse, or one from before the digest
        return False
    return fingerprint == schema_fingerprint() and recorded == [n for n, _, _ in migrations()]


def migrate_single_writer_tables(con: duckdb.DuckDBPyConnection) -> bool:
    """Warehouses made before each stage had its own table kept ``submissions`` and
    ``quarantine`` as tables that three stages updated; they are views now. The old tables
    are dropped: their landing sidecars carry no ``ingested_key`` yet, so the next run
    ingests every landed submission again and rebuilds every stage's table from the bytes
    kept in landing (nothing handed in is lost). Returns whether it migrated."""
    old = con.execute(query("warehouse.old_submissions_table")).fetchone()[0]
    if old:
        con.execute(query("warehouse.drop_old_submissions"))
    # Before a submission was a party plus its bytes, landed_submissions had no file_sha256 or
    # paths; its submissions are landed again under their new keys and every stage's table is
    # rebuilt (the old landing entries stay, byte for byte).
    keyed_by_file = con.execute(query("warehouse.keyed_by_file")).fetchone()[0]
    if keyed_by_file:
        con.execute(query("warehouse.drop_keyed_by_file"))
    return bool(old or keyed_by_file)


def _connect_waiting(path: str, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + wait
    delay = 0.2
    while True:
        try:
            return duckdb.connect(path, read_only=read_only, config=connection_config())
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() >= deadline:
                raise WarehouseBusy(
                    f"warehouse {path} is locked by another process (is another 'cbm run' "
                    f"or a Dagster run using this workdir?); waited {wait:.0f}s"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


@dataclass(frozen=True)
class ReleaseContext:
    """What the release_context asset fixed for this run: the release's "now", its method,
    the submissions whose rows verification read, and the pseudonymisation key's version and
    fingerprint (never the key)."""

    as_of: datetime
    method_version: str
    inputs: list[str]
    key_version: str
    key_fingerprint: str
    registry_digest: str | None = None  # None: a bundle's context from before it was kept


def read_release_context(con: duckdb.DuckDBPyConnection) -> ReleaseContext:
    has_digest = con.execute(
        query("warehouse.has_column"), ["release_context", "registry_digest"]
    ).fetchone()[0]
    row = con.execute(
        query(
            "warehouse.release_context" if has_digest else "warehouse.release_context_before_digest"
        )
    ).fetchone()
    if row is None or row[0] is None:
        raise RuntimeError(
            "no as-of time: the warehouse has no accepted reports and no --as-of was given"
        )
    as_of, method_version, inputs, key_version, key_fingerprint, digest = row
    return ReleaseContext(
        as_of, method_version, sorted(inputs or []), key_version, key_fingerprint, digest
    )


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The tables and views of the warehouse (an older one may lack some)."""
    return {t for (t,) in con.execute(query("warehouse.table_names")).fetchall()}


def _relation(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> duckdb.DuckDBPyRelation:
    """A query as a relation (``con.sql``), for Arrow output: not the DB-API cursor, as DuckDB 2
    copies the rows once more for Arrow output of an ``execute`` (more memory and time for the
    same bytes: benchmarks/README.md, M15). A relation refuses to start while an earlier
    ``execute`` result was read only in part (``fetchone``); its rest is dropped first, as the
    next ``execute`` would drop it."""
    con.abort()
    return con.sql(sql, params=params or None)


def fetch_arrow(con: duckdb.DuckDBPyConnection, sql: str, params=None):
    """A query's result as a pyarrow Table."""
    return _relation(con, sql, params).to_arrow_table()


def stream_arrow(con: duckdb.DuckDBPyConnection, sql: str, params=None):
    """A query's result as a pyarrow RecordBatchReader, for rows too many to hold twice: the
    same rows and types as ``fetch_arrow``, batch by batch (the member bundle's reports:
    benchmarks/README.md, M30). Nothing else may run on ``con`` until it is read."""
    return _relation(con, sql, params).to_arrow_reader()


def indicator_period_range(con: duckdb.DuckDBPyConnection) -> tuple[str, str] | None:
    """The first and last month ('YYYY-MM') with events or verdicts, up to the as-of month:
    the indicator months a release computes."""
    made = sorted(table_names(con) & {"incident_clusters", "compliance_verdicts"})
    if not made:  # verification has not run yet
        return None
    periods = " UNION ALL ".join(query("warehouse.periods_of", table=t) for t in made)
    first, last = con.execute(query("warehouse.period_range", periods=Sql(periods))).fetchone()
    return None if first is None else (first, last)


class KeyMismatch(RuntimeError):
    """The pseudonymisation key of this run is not the one the warehouse was built with."""


def recorded_key(con: duckdb.DuckDBPyConnection) -> tuple[str, str] | None:
    """The (version, fingerprint) of the key the warehouse's pseudonyms were made with: the
    ``pseudonym_key`` row, else (a warehouse from before it was kept) the last release
    context's; None for a warehouse that has made no pseudonym yet."""
    tables = table_names(con)
    if "pseudonym_key" in tables:
        row = con.execute(query("warehouse.key_recorded")).fetchone()
        if row:
            return row
    if "release_context" in tables:
        row = con.execute(query("warehouse.key_of_last_release")).fetchone()
        if row and row[1]:
            return row
    return None


def key_problem(recorded: tuple[str, str] | None, version: str, fingerprint: str) -> str | None:
    """One line when a key (version, fingerprint) is not the recorded one; None when it is."""
    if recorded is None or recorded[1] == fingerprint:
        return None
    return (
        f"the pseudonymisation key {version} ({fingerprint}) is not the key this warehouse's "
        f"pseudonyms were made with ({recorded[0]}, {recorded[1]}): set CBM_KEY_FILE to that key, "
        "or change keys on purpose with 'cbm rotate-key' (docs/reliability-and-security.md)"
    )


def warehouse_key_problem(
    path: Path, version: str, fingerprint: str, wait_seconds: float = 120.0
) -> str | None:
    """``key_problem`` for the warehouse file at ``path``, read-only (None: no such file);
    ``WarehouseBusy`` when a writer holds it longer than ``wait_seconds``."""
    if not Path(path).exists():
        return None
    with Warehouse(str(path), wait_seconds).connect(read_only=True) as con:
        return key_problem(recorded_key(con), version, fingerprint)


def claim_key(con: duckdb.DuckDBPyConnection, version: str, fingerprint: str) -> None:
    """Before an asset writes a pseudonym: record the key when the warehouse has none,
    raise ``KeyMismatch`` (nothing written) when it was built with another."""
    recorded = recorded_key(con)
    problem = key_problem(recorded, version, fingerprint)
    if problem:
        raise KeyMismatch(problem)
    if not con.execute(query("warehouse.key_recorded")).fetchall():
        con.execute(query("warehouse.record_key"), [version, fingerprint])
