"""``cbm run``'s work around its runs: the inputs checked, the workdir lock, the "nothing
new" state and the run summary. The runs themselves are made by the one runner,
``pipelines.runs``, as the sensor's and ``cbm rederive``'s are.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines import ARROW_POOLS
from pipelines.output import (
    CannotRun,
    Progress,
    _check_folder,
    _count,
    _say,
    _show,
    after_the_command,
)
from warehouse.queries import query


def _prepare_dagster_home(workdir: Path) -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or workdir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    from pipelines.event_log import default_instance_yaml, relocatable_instance_yaml

    if not config.exists():
        config.write_text(default_instance_yaml())
    elif fixed := relocatable_instance_yaml(config.read_text()):
        config.write_text(fixed)  # made before its event log's path was relative: a copy
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def gx_keep_results_from_env() -> int:
    """``CBM_GX_KEEP_RESULTS`` (default 30): GX validation results kept per suite and table."""
    text = os.environ.get("CBM_GX_KEEP_RESULTS", "30")
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"CBM_GX_KEEP_RESULTS must be a whole number >= 1, not {text!r}")
    return int(text)


def _check_inputs(inbox: Path, registry_dir: Path):
    from cbm.intake import worker_count
    from cbm.protection import KeyError_, load_key
    from cbm.registry import RegistryError, load_registry
    from warehouse.db import memory_limit

    _check_folder("--inbox", inbox, must_exist=True)
    _check_folder("--registry", registry_dir, must_exist=True)
    try:
        registry = load_registry(registry_dir)
    except RegistryError as exc:
        raise CannotRun(f"invalid registry: {exc}") from exc
    try:
        key = load_key()
    except KeyError_ as exc:
        raise CannotRun(str(exc)) from exc
    try:
        worker_count(os.environ.get("CBM_WORKERS"))
        memory_limit(os.environ.get("CBM_DUCKDB_MEMORY"))
    except ValueError as exc:
        raise CannotRun(str(exc)) from exc
    batch = os.environ.get("DAGSTER_EVENT_BATCH_SIZE")  # read by Dagster (pipelines/event_log.py)
    if batch is not None and not batch.strip().isdigit():
        raise CannotRun(
            "DAGSTER_EVENT_BATCH_SIZE must be a whole number >= 0 (0: Dagster stores events "
            f"one by one), not {batch!r}"
        )
    pool = os.environ.get("ARROW_DEFAULT_MEMORY_POOL")  # read by Arrow (pipelines/__init__.py)
    if pool not in ARROW_POOLS:
        raise CannotRun(
            f"ARROW_DEFAULT_MEMORY_POOL must be one of {', '.join(ARROW_POOLS)} (Arrow's "
            f"allocator; unset, cbm uses system), not {pool!r}"
        )
    return registry, key


def run_pipeline(
    inbox: Path,
    registry_dir: Path,
    workdir: Path,
    publish: Path,
    as_of: str | None = None,
    wait_seconds: float = 600,
    signing_key: str | None = None,
    ingest_only: bool = False,
    accept_change: str | None = None,
    unsigned: bool = False,
) -> dict:
    """Land, ingest, verify and publish; returns a summary. Raises CannotRun / RuntimeError.

    ``signing_key`` (or ``CBM_SIGNING_KEY_FILE``): the publisher's key file; the release is
    signed with it. When the registry names the publisher's public key, a run without one
    cannot start unless ``unsigned`` says so on purpose (the manifest then says so too).

    ``accept_change``: why a release that changes more than the release guard allows is
    published all the same (recorded in its manifest).

    ``ingest_only``: land and ingest, and stop there; the next run without it verifies and
    publishes (it is never taken for "nothing new").

    One run per workdir at a time: a second ``cbm run`` waits for the first (saying so),
    and gives up with a clear message after ``wait_seconds``.
    """
    # every operator mistake is found here, before Dagster or GX is loaded
    registry, key = _check_inputs(inbox, registry_dir)
    _check_folder("--workdir", workdir, must_exist=False)
    _check_folder("--publish", publish, must_exist=False)
    home = os.environ.get("DAGSTER_HOME")
    if home:
        _check_folder("DAGSTER_HOME", Path(home), must_exist=False)
    if as_of:
        from cbm.release import parse_as_of

        try:
            parse_as_of(as_of)
        except ValueError as exc:
            raise CannotRun(str(exc)) from exc
    try:
        keep_results = gx_keep_results_from_env()
    except ValueError as exc:
        raise CannotRun(str(exc)) from exc
    signer = _check_signing_key(
        signing_key or os.environ.get("CBM_SIGNING_KEY_FILE"), registry, registry_dir, unsigned
    )
    if accept_change is not None and not accept_change.strip():
        raise CannotRun("--accept-change needs the reason, e.g. --accept-change 'policy v2'")
    workdir.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(
        inbox,
        registry_dir,
        registry,
        key,
        workdir,
        publish,
        as_of,
        keep_results,
        signer,
        ingest_only,
        accept_change,
        unsigned,
    )
    with _workdir_lock(workdir, wait_seconds):
        return _run_pipeline_locked(spec)


@dataclass(frozen=True)
class RunSpec:
    """One run's folders and choices, checked by ``run_pipeline``."""

    inbox: Path
    registry_dir: Path
    registry: object  # cbm.registry.Registry, loaded once
    key: object  # cbm.protection.PseudonymKey, loaded once
    workdir: Path
    publish: Path
    as_of: str | None
    keep_results: int
    signer: object | None  # cbm.signatures.SigningKey
    ingest_only: bool
    accept_change: str | None
    unsigned: bool


def _check_signing_key(key_file: str | None, registry, registry_dir: Path, unsigned: bool = False):
    """The publisher's key, checked against the registry before anything runs; none when
    the registry names no publisher key or ``unsigned`` says so on purpose."""
    from cbm.registry import publisher, signing_key_problem
    from cbm.signatures import SigningError, SigningKey

    if unsigned and key_file:
        raise CannotRun("--unsigned and --signing-key (or CBM_SIGNING_KEY_FILE) contradict")
    if not key_file:
        who = publisher(registry.parties)
        if who is not None and who.public_key and not unsigned:
            raise CannotRun(
                f"{registry_dir / 'parties.yaml'} names the publisher's key ({who.code}): give "
                "--signing-key FILE or CBM_SIGNING_KEY_FILE, or --unsigned to publish unsigned "
                "on purpose"
            )
        return None

    try:
        key = SigningKey(Path(key_file))
    except SigningError as exc:
        raise CannotRun(f"--signing-key {exc}") from exc
    problem = signing_key_problem(registry.parties, key.public_key, key.party)
    if problem:
        raise CannotRun(f"--signing-key {key_file}: {problem}")
    return key


@contextmanager
def _workdir_lock(workdir: Path, wait_seconds: float, quiet: bool = False):
    path = workdir / ".cbm-run.lock"
    with path.open("a+") as fh:
        deadline, told = time.monotonic() + wait_seconds, quiet
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    fh.seek(0)
                    _say(
                        f"waiting: another cbm run holds {workdir} ({fh.read().strip() or 'unknown pid'})"
                    )
                    told = True
                if time.monotonic() >= deadline:
                    raise CannotRun(
                        f"another cbm run still holds {workdir} after {wait_seconds:.0f}s"
                    ) from None
                time.sleep(0.5)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_pipeline_locked(spec: RunSpec) -> dict:
    """The run itself; the caller checked the inputs and holds the workdir lock."""
    from cbm.intake import plan_intake, worker_count
    from warehouse.db import warehouse_key_problem

    t0 = time.monotonic()
    key = spec.key
    # key continuity: another key stops here, before landing or the warehouse is touched
    problem = warehouse_key_problem(spec.workdir / "warehouse.duckdb", key.version, key.fingerprint)
    if problem:
        raise CannotRun(problem)
    landing_dir = spec.workdir / "landing"
    _say(f"[1/3] landing {spec.inbox}")
    progress = Progress()
    plan = plan_intake(
        spec.inbox,
        landing_dir,
        limits=spec.registry.policy.limits,
        progress=lambda i, n: progress.update(f"      landing {i:,}/{n:,} files"),
        workers=worker_count(os.environ.get("CBM_WORKERS")),  # checked by _check_inputs
    )
    progress.clear()
    shas = plan.submissions
    _say(
        f"      {_count(len(plan.files), 'file')}, {sum(f.new for f in plan.files):,} new, "
        f"{_count(len(shas), 'submission')}"
    )
    for path, why in plan.deferred:  # one party's unsettled file waits; it stops no one
        _show(f"      deferred {path}: {why}")
    state = _run_state(plan, spec) | {"signer": spec.signer and spec.signer.public_key}
    if not plan.to_ingest and _last_run_state(spec.workdir) == state:
        summary = summarize(spec.workdir, spec.publish)
        if summary["latest_release"] and Path(summary["release_path"], "manifest.json").exists():
            _say(f"nothing new: release {summary['latest_release']} is current")
            summary["seconds"] = round(time.monotonic() - t0, 1)
            return summary
    if plan.to_ingest:  # its readers' fork server starts beside what comes next
        from cbm.children import start_early

        start_early()
    if spec.ingest_only:
        _forget_last_run_state(spec.workdir)  # the next full run verifies and publishes
    started = datetime.now(UTC)
    try:
        summary = _run_jobs(spec, plan)
    finally:  # a failed run's validations get their pages too
        later = after_the_command(lambda: _build_data_docs_locked(spec, started))
        if not later:
            _build_data_docs(spec, started)
    # after the pages: a first run's summary names the index it has just rendered (or that
    # a warm process's child renders once the command has returned)
    summary["data_docs"] = _data_docs_path(spec.workdir, to_be_built=later)
    summary["seconds"] = round(time.monotonic() - t0, 1)
    if not spec.ingest_only:
        _write_last_run_state(spec.workdir, state)
    return summary


def _build_data_docs_locked(spec: RunSpec, since: datetime) -> None:
    """``_build_data_docs`` after the command has returned (a warm process's child: decision 2
    of #40, the pages off the run's critical path), under the workdir's lock again: a run
    that took the lock first is waited for, and its pages are built with these."""
    with _workdir_lock(spec.workdir, wait_seconds=3600, quiet=True):
        try:
            _build_data_docs(spec, since)
        except Exception:
            # the run's state is written: without this, the next run would find "nothing
            # new" and these pages would never be rendered; it now runs again, and renders
            _forget_last_run_state(spec.workdir)
            raise


def _build_data_docs(spec: RunSpec, since: datetime) -> None:
    """The Data Docs of every validation this run made, built once after its last job (its
    runs' results point to them: ``CbmSettings.docs_after_run``; benchmarks/README.md, M19)."""
    from checks.offline_docs import gx_dir_of
    from checks.validation import build_data_docs

    gx_dir = gx_dir_of(spec.workdir.resolve())  # absolute: pages are named by file:// URIs
    if (gx_dir / "gx").is_dir():  # no validation ran yet: nothing to render
        build_data_docs(gx_dir, keep=spec.keep_results, since=since)


def _run_jobs(spec: RunSpec, plan) -> dict:
    """Ingest what the plan names, then verify, compute indicators and publish, in-process."""
    import dagster as dg

    from assets.resources import (
        CbmSettings,
        RegistryResource,
        SigningKeyResource,
    )
    from pipelines.definitions import build_definitions
    from pipelines.runs import InProcess
    from warehouse.db import Warehouse

    spec.publish.mkdir(parents=True, exist_ok=True)
    _prepare_dagster_home(spec.workdir)
    settings = CbmSettings(
        inbox=str(spec.inbox.resolve()),
        workdir=str(spec.workdir.resolve()),
        publish=str(spec.publish.resolve()),
        as_of=spec.as_of,
        gx_keep_results=spec.keep_results,
        accept_change=spec.accept_change,
        unsigned=spec.unsigned,
        docs_after_run=True,
    )
    defs = build_definitions(
        settings,
        RegistryResource(directory=str(spec.registry_dir.resolve())),
        SigningKeyResource(key_file=str(spec.signer.path.resolve()) if spec.signer else ""),
    )
    instance = dg.DagsterInstance.get()
    runs = InProcess(defs, instance)
    if stale := runs.release_dead_runs():
        _say(f"      marked {stale} run(s) of a killed cbm run as failed")
    todo = set(plan.to_ingest)
    _say(
        f"[2/3] ingesting {_count(len(todo), 'submission')}: "
        "landing > staged > anonymised > validated"
        + ("" if spec.ingest_only else ", then verifying")
    )
    loading = _import_validation_stack_behind() if todo else None
    try:
        with Warehouse(str(settings.warehouse_path)).held():  # the runs' steps and reads join it
            return _ingest_and_publish(spec, plan, settings, runs, todo)
    finally:  # a run that failed before validating does not leave an import half done
        if loading is not None:
            loading.join()


def _import_validation_stack_behind() -> threading.Thread:
    """Import Great Expectations (``checks.validation``) on a second thread while the ingestion
    run lands, stages and anonymises the rows, work done mostly in DuckDB, polars and the reader
    children, which leave the interpreter free: ``validated_reports`` then finds it imported
    instead of importing it itself (benchmarks/README.md, M29). Only a run with rows to validate
    starts it (decision 4 of #40). Should the import fail, the step's own import raises the
    error where it always did."""

    def load() -> None:
        with suppress(Exception):  # the step imports it again and says what failed
            import checks.validation  # noqa: F401

    thread = threading.Thread(target=load, name="cbm-import-validation", daemon=True)
    thread.start()
    return thread


def _ingest_and_publish(spec: RunSpec, plan, settings, runs, todo: set[str]) -> dict:
    from pipelines.jobs import VERIFY_AFTER_INGESTION
    from pipelines.runs import print_materializations, verified_anything
    from warehouse.db import Warehouse

    started = time.time()
    # verification in the ingestion's own run (decision 3 of #40): a run per partitioned stage
    ingested = runs.ingest(plan, then_verify=not spec.ingest_only)
    # rows are counted by the run that first read them: a submission looked at again (a
    # repeat under a new name, a late signature) is told apart, as cbm status counts it once
    again = todo & set(plan.again)
    with Warehouse(str(settings.warehouse_path)).connect() as con:
        read, accepted, quarantined = con.execute(
            query("cli.batch_rows"), {"todo": sorted(todo - again)}
        ).fetchone()
        reread = con.execute(query("cli.batch_rows"), {"todo": sorted(again)}).fetchone()
        failed = con.execute(query("cli.anonymisation_failures"), [sorted(todo)]).fetchall()
    if todo - again:
        seconds = (ingested.verification_started or time.time()) - started
        _say(
            f"      {read:,} rows read = {accepted:,} accepted + {quarantined:,} quarantined "
            f"({read / max(seconds, 0.001):,.0f} rows/s)"
        )
    if again:
        _say(
            f"      {_count(len(again), 'submission')} looked at again (a new name or "
            f"signature): {reread[0]:,} rows = {reread[1]:,} accepted + "
            f"{reread[2]:,} quarantined, counted once (cbm status)"
        )
    if spec.ingest_only:
        _say("[3/3] not verifying or publishing (--ingest-only): the next 'cbm run' will")
    else:
        verified = ingested.verified
        if verified is None:  # nothing to ingest: verification is a run of its own
            verified = runs.verify()
        else:
            print_materializations(verified, VERIFY_AFTER_INGESTION)
        if verified_anything(verified):
            _say("[3/3] computing indicators, publishing")
            runs.publish(settings)
        else:
            _say(
                "[3/3] nothing to verify or publish yet: no report has been accepted "
                "(see cbm status)"
            )
    summary = summarize(spec.workdir, spec.publish)
    summary["failed_submissions"] = [f for (f,) in failed]
    return summary


def _run_state(plan, spec: RunSpec) -> dict:
    """What a release depends on, cheaply: the submissions (with their signatures), the
    registry files (the method's policy among them), the as-of flag, the key, and the code
    itself. Equal to the last successful run's state with nothing to ingest = nothing new to
    publish."""
    from pipelines.warm import code_fingerprint

    return {
        "intake_keys": sorted({f.intake_key for f in plan.files}),
        # any edit of the registry (a commitment, a party's class, the policy)
        "registry": hashlib.sha256(
            b"".join(
                (spec.registry_dir / name).read_bytes()
                for name in ("parties.yaml", "commitments.yaml", "policy.yaml")
            )
        ).hexdigest(),
        "as_of": spec.as_of,
        "key": spec.key.fingerprint,
        "code": code_fingerprint(),
    }


def _last_run_state(workdir: Path) -> dict | None:
    path = workdir / "last_run.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_last_run_state(workdir: Path, state: dict) -> None:
    from cbm.files import write_atomic

    write_atomic(workdir / "last_run.json", json.dumps(state, sort_keys=True))


def _forget_last_run_state(workdir: Path) -> None:
    (workdir / "last_run.json").unlink(missing_ok=True)


def summarize(workdir: Path, publish: Path) -> dict:
    from cbm import release as rel
    from warehouse.db import Warehouse, table_names

    warehouse = workdir / "warehouse.duckdb"
    with Warehouse(str(warehouse)).connect(readers=True) as con:
        row = con.execute(query("submissions.totals")).fetchone()
        alerts = con.execute(query("cli.alert_counts")).fetchone()
        open_disputes = (
            con.execute(query("cli.open_disputes")).fetchone()[0]
            if "disputes" in table_names(con)
            else 0
        )
    latest = rel.latest(publish)
    releases = (
        sorted(p.name for p in (publish / "releases").glob("r-*"))
        if (publish / "releases").exists()
        else []
    )
    return {
        "submissions": row[0],
        "submissions_rejected": row[1],
        "rows_read": row[2],
        "rows_accepted": row[3],
        "rows_quarantined": row[4],
        "releases": len(releases),
        "latest_release": latest,
        "release_path": str(publish / "releases" / latest) if latest else None,
        "warehouse": str(warehouse),
        "workdir": str(workdir),
        "data_docs": _data_docs_path(workdir),
        "signed": bool(latest) and (publish / "releases" / latest / rel.SIGNATURE).is_file(),
        "alerts": alerts[0],
        "alerts_unacknowledged": alerts[1],
        "open_disputes": open_disputes,
    }


def _data_docs_path(workdir: Path, to_be_built: bool = False) -> str | None:
    """The Data Docs index of the workdir, once rendered (or to be rendered: ``to_be_built``,
    when a validation has run)."""
    from checks.offline_docs import data_docs_index, gx_dir_of

    docs = data_docs_index(gx_dir_of(workdir))
    if to_be_built and (gx_dir_of(workdir) / "gx").is_dir():
        return str(docs)
    return str(docs) if docs.exists() else None


def _print_summary(s: dict) -> None:
    _say("")
    _say(f"Submissions       {s['submissions']:>9,}  ({s['submissions_rejected']} rejected whole)")
    _say(f"Rows read         {s['rows_read']:>9,}")
    _say(f"Rows accepted     {s['rows_accepted']:>9,}")
    _say(f"Rows quarantined  {s['rows_quarantined']:>9,}")
    latest = f"  (latest {s['latest_release']})" if s["latest_release"] else ""
    _say(f"Releases          {s['releases']:>9,}{latest}")
    if "alerts" in s:
        waiting = s["alerts_unacknowledged"]
        note = f"  ({waiting} not acknowledged: cbm alerts --workdir {s['workdir']} --open)"
        _say(f"Alerts            {s['alerts']:>9,}{note if waiting else ''}")
        _say(f"Open disputes     {s['open_disputes']:>9,}")
    _say("")
    _say(f"Published release: {s['release_path'] or 'none yet'}")
    if s["release_path"] and Path(s["release_path"], "report", "index.html").is_file():
        _say(
            f"Report:            {Path(s['release_path'], 'report', 'index.html')} (opens offline)"
        )
    release = Path(s["release_path"]) if s["release_path"] else None
    if release and (release / "calendar" / "calendar.ics").is_file():
        _say(f"Calendar:          {release / 'calendar' / 'calendar.ics'}")
    if release and (release / "stix" / "bundle.json").is_file():
        _say(f"STIX / MISP:       {release / 'stix' / 'bundle.json'}, {release / 'misp'}/")
    if s["release_path"]:
        _say(
            "Signed:            yes (manifest.json.sig)"
            if s["signed"]
            else "Signed:            no: give --signing-key FILE (or CBM_SIGNING_KEY_FILE) to sign"
        )
    _say(f"Warehouse:         {s['warehouse']}")
    if s.get("data_docs"):
        _say(f"Data Docs:         {s['data_docs']}")
        _say(f"                   over http, for the UI's links: cbm docs --workdir {s['workdir']}")
