"""Anonymised: anonymisation enforced, not trusted, before anything reaches the warehouse.

Submitters become keyed pseudonyms; free text is scrubbed of e-mails, URLs, IPs, phone
numbers and registered party names; technical keys become keyed hashes (each distinct value
hashed once, then joined back) (``cbm.protection``). Typed columns are cast in DuckDB; the
text of every typed field is kept beside it (scrubbed) so a value that does not parse can be
named in quarantine.
"""

import contextlib
import functools
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dagster as dg
import polars as pl

from assets.metadata import declared_schema, keeps, markdown_preview
from assets.partitions import submissions_partitions
from assets.resources import CbmSettings, PseudonymKeyResource, RegistryResource
from assets.stages import INGESTION, WAREHOUSE_POOL, stage
from cbm.children import child_context, end_quietly_on_ctrl_c
from cbm.contract import KINDS
from cbm.intake import staged_path, submissions_of
from cbm.protection import anonymise_staged, anonymise_to_file
from compat.dagster import DagsterExecutionInterruptedError
from warehouse.db import anon_insert_sql
from warehouse.queries import query
from warehouse.resource import WarehouseResource

ANONYMISED = stage("anonymised", INGESTION)


# DuckDB stores a table in row groups of 122,880 rows. An insert whose rows arrive as many
# Arrow chunks, or that ends in a part-filled row group, leaves small row groups that the
# next checkpoint merges by rewriting the table's data (as long again as the insert:
# benchmarks/README.md, M1). So each insert is one contiguous chunk of whole row groups;
# the rest waits for the next batch, and only the last insert of a kind may end part-filled.
ROW_GROUP_ROWS = 122_880
BATCH_ROWS = 2 * ROW_GROUP_ROWS


def _insert(con, kind: str, frames: list[pl.DataFrame], last: bool = False) -> None:
    """Write the pending ``frames`` of ``kind``: all of them if ``last``, otherwise as many
    whole row groups as they fill, keeping the remainder pending (memory stays bounded)."""
    if not frames:
        return
    rows = pl.concat(frames, how="vertical", rechunk=True)
    frames.clear()
    cut = rows.height if last else rows.height - rows.height % ROW_GROUP_ROWS
    if cut < rows.height:
        frames.append(rows.slice(cut))
    if cut:
        con.register("anon_frame", rows.slice(0, cut).to_arrow())
        con.execute(anon_insert_sql(kind))
        con.unregister("anon_frame")


def _anonymised(settings: CbmSettings, todo, key, names, by_label) -> Iterator:
    """Each submission's anonymised rows, or the exception that stopped it, in ``todo``'s
    order. With more than one worker (``settings.worker_count``), the submissions are
    anonymised side by side in child processes, each writing its rows to a file
    (``<workdir>/anon/``) that is read back here in order, so the warehouse gets the same rows
    in the same order whatever the number of workers."""
    staged = [
        (staged_path(settings.staged_dir, sha), kind, party, key, names, by_label)
        for sha, kind, party in todo
    ]
    workers = min(settings.worker_count, len(todo))
    with contextlib.ExitStack() as stack:
        if workers <= 1:
            rows = [functools.partial(anonymise_staged, *args) for args in staged]
        else:
            out = Path(settings.workdir) / "anon"
            out.mkdir(parents=True, exist_ok=True)
            pool = stack.enter_context(
                ProcessPoolExecutor(
                    workers, mp_context=child_context(), initializer=end_quietly_on_ctrl_c
                )
            )
            rows = []
            for (sha, _, _), args in zip(todo, staged, strict=True):
                target = out / f"{sha}.parquet"
                job = pool.submit(anonymise_to_file, target, *args)
                rows.append(functools.partial(_read_back, job, target))
        for submission_rows in rows:
            try:
                yield submission_rows()
            except (KeyboardInterrupt, SystemExit, DagsterExecutionInterruptedError):
                raise  # Ctrl-C stops the run, not one submission
            except BaseException as exc:  # noqa: BLE001 - reported per submission
                yield exc


def _read_back(future, target: Path) -> pl.DataFrame:
    """A worker's rows, from the file it wrote (removed once read)."""
    try:
        future.result()
        return pl.read_parquet(target)
    finally:
        target.unlink(missing_ok=True)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            f"anon_{kind}",
            deps=["staged_submissions"],
            partitions_def=submissions_partitions,
            **ANONYMISED,
            metadata=declared_schema(f"anon_{kind}") | keeps("anonymisation_failures"),
            kinds={"polars", "duckdb"},
            description=(
                f"Every staged {kind} row with its submitter as an HMAC-SHA-256 pseudonym, free "
                "text scrubbed, technical keys keyed-hashed and types cast (the text of each typed "
                "field kept beside it, scrubbed). Nothing raw from a party's text reaches the "
                "warehouse. A submission that could not be anonymised is in "
                "`anonymisation_failures`, with the reason."
            ),
        )
        for kind in KINDS
    ],
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=WAREHOUSE_POOL,
)
def anonymised_reports(
    context: dg.AssetExecutionContext,
    settings: CbmSettings,
    registry: RegistryResource,
    pseudonym_key: PseudonymKeyResource,
    warehouse: WarehouseResource,
):
    shas = submissions_of(settings.landing_area, context.partition_keys)
    key = pseudonym_key.key
    names = [p.name for p in registry.registry.parties.values()]
    by_label = registry.registry.code_by_label
    counts = dict.fromkeys(KINDS, 0)
    with warehouse.connect() as con:
        pseudonym_key.claimed(con)
        todo = con.execute(query("intake.to_anonymise"), [shas]).fetchall()
        for kind in KINDS:
            con.execute(query("intake.forget_anonymised", kind=kind), [shas])
        # Appends are batched (one large insert beats many small ones into the DuckDB file);
        # a batch is written once it holds BATCH_ROWS rows, in whole row groups (_insert).
        pending: dict[str, list[pl.DataFrame]] = {k: [] for k in KINDS}
        con.execute(query("intake.forget_anonymisation_failures"), [shas])
        for (sha, kind, party), anon in zip(
            todo, _anonymised(settings, todo, key, names, by_label), strict=True
        ):
            if isinstance(anon, BaseException):  # one submission fails alone, said why
                first = (str(anon).strip().splitlines() or [""])[0][:200]
                reason = f"anonymisation failed ({anon.__class__.__name__}: {first})"
                context.log.warning(f"{party}: {reason}")
                con.execute(query("intake.anonymisation_failed"), [sha, reason])
                continue
            pending[kind].append(anon.with_columns(pl.lit(sha).alias("_sha")))
            counts[kind] += anon.height
            if sum(f.height for f in pending[kind]) >= BATCH_ROWS:
                _insert(con, kind, pending[kind])
        for kind, frames in pending.items():
            _insert(con, kind, frames, last=True)
        context.log.info(f"anonymised {sum(counts.values())} rows from {len(todo)} submissions")
        for kind in KINDS:
            metadata = {
                "dagster/row_count": counts[kind],
                "key_version": key.version,
            }
            if kind == "incidents":
                metadata["preview"] = dg.MetadataValue.md(
                    # what a verifier may see (contract §5), whatever the scrubber left
                    markdown_preview(con, query("intake.anonymised_preview"), [shas])
                )
            yield dg.MaterializeResult(asset_key=f"anon_{kind}", metadata=metadata)
