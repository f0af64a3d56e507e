"""``cbm``: the operator interface (contract §6). Runs the same Definitions as Dagster, in-process.

Exit codes: 0 success (quarantined rows are not a failure); 1 the run started but a step
failed, or a release does not verify; 2 it could not start (missing inbox, invalid registry,
no key, bad arguments).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CannotRun(Exception):
    """A one-line reason why a command cannot start."""


def _say(msg: str) -> None:
    print(msg, flush=True)


def printable(text: str) -> str:
    """Text for a terminal: control and format characters (escape sequences, newlines,
    bidirectional overrides) that a party put in a file name or a value shown as ``\\x1b``,
    ``\\n``, ``\\u202e``, so what is printed cannot move the cursor, recolour or retitle the
    terminal, or hide a line."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def _show(line: str) -> None:
    """``_say`` of a line that holds names or values a party chose."""
    _say(printable(line))


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


def _check_folder(flag: str, path: Path, must_exist: bool) -> None:
    """A folder given on the command line: it exists (or can be made), and is a folder."""
    if path.exists() and not path.is_dir():
        raise CannotRun(f"{flag} {path} is a file, not a folder")
    if must_exist and not path.exists():
        raise CannotRun(f"{flag} {path} does not exist")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CannotRun(f"{flag} {path}: {parent} is a file, not a folder")
            if not must_exist and not os.access(parent, os.W_OK | os.X_OK):
                raise CannotRun(f"{flag} {path}: cannot create it in {parent} (permission denied)")
            break


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
    return registry, key


def _failure_reason(result) -> str:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            err = event.event_specific_data.error
            cause = err.cause or err
            text = cause.message.strip().splitlines()[-1]
            if cause.cls_name == "Failure":  # ours, meant to be read: not the class's path
                text = text.split("Failure: ", 1)[-1]
            return f"{event.step_key}: {text}"
    return "the run failed (see the Dagster UI for the event log)"


def _print_materializations(result) -> None:
    rows: dict[str, int] = {}
    for ev in result.get_asset_materialization_events():
        mat = ev.event_specific_data.materialization
        n = mat.metadata.get("dagster/row_count")
        name = mat.asset_key.to_user_string()
        if name not in rows and n is not None:
            rows[name] = n.value
    for name, n in rows.items():
        _say(f"      {name:<22} {n:>9,} rows")


def _release_dead_runs(instance) -> int:
    """Mark runs that an earlier, killed ``cbm run`` left 'started' as failed, freeing any
    concurrency slots they held. Only runs tagged with a cbm pid that no longer lives."""
    import dagster as dg

    stale = 0
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        pid = run.tags.get("cbm/pid")
        if not pid or _alive(int(pid)):
            continue
        instance.report_run_failed(
            run, f"the cbm run process {pid} died (killed?) before the run ended"
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        stale += 1
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# Dagster's own console log stays quiet: cbm prints its progress lines itself.
# A failed step is told in one line by cbm (``_failure_reason``), never as Dagster's error log
# with its stack trace; the whole event log stays in the instance for the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def execute_job(
    defs,
    instance,
    job_name: str,
    key_range: tuple[str, str] | None = None,
    show: bool = True,
):
    """Run one job in-process; print its materializations; raise with a one-line reason."""
    from pipelines.definitions import LOCATION_NAME

    # the label the UI files a code location's runs under: runs of cbm run then show in the
    # Overview timeline and each job's run history, beside the runs launched from the UI
    tags = {"cbm/pid": str(os.getpid()), ".dagster/repository": f"__repository__@{LOCATION_NAME}"}
    if key_range:
        tags["dagster/asset_partition_range_start"] = key_range[0]
        tags["dagster/asset_partition_range_end"] = key_range[1]
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, run_config=QUIET, raise_on_error=False, tags=tags
    )
    if not result.success:
        raise RuntimeError(f"{job_name} failed: {_failure_reason(result)}")
    if show:
        _print_materializations(result)
    return result


def indicator_months(settings, instance) -> tuple[str, str] | None:
    """The month partitions that have verdicts or events, up to the as-of month (registered)."""
    from assets.partitions import register_months
    from warehouse.db import Warehouse, indicator_period_range

    with Warehouse(str(settings.warehouse_path)).connect() as con:
        span = indicator_period_range(con)
    if span is None:
        return None
    register_months(instance, *span)
    return span


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
def _workdir_lock(workdir: Path, wait_seconds: float):
    path = workdir / ".cbm-run.lock"
    with path.open("a+") as fh:
        deadline, told = time.monotonic() + wait_seconds, False
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
    if spec.ingest_only:
        _forget_last_run_state(spec.workdir)  # the next full run verifies and publishes
    summary = _run_jobs(spec, plan, t0)
    if not spec.ingest_only:
        _write_last_run_state(spec.workdir, state)
    return summary


def _run_jobs(spec: RunSpec, plan, t0: float) -> dict:
    """Ingest what the plan names, then verify, compute indicators and publish, in-process."""
    import dagster as dg

    from assets.partitions import submissions_partitions
    from assets.resources import (
        CbmSettings,
        RegistryResource,
        SigningKeyResource,
    )
    from cbm.intake import contiguous_ranges
    from pipelines.definitions import build_definitions
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
    )
    defs = build_definitions(
        settings,
        RegistryResource(directory=str(spec.registry_dir.resolve())),
        SigningKeyResource(key_file=str(spec.signer.path.resolve()) if spec.signer else ""),
    )
    instance = dg.DagsterInstance.get()
    if stale := _release_dead_runs(instance):
        _say(f"      marked {stale} run(s) of a killed cbm run as failed")
    known = set(instance.get_dynamic_partitions(submissions_partitions.name))
    fresh = [k for k in plan.partition_keys if k not in known]
    if fresh:
        instance.add_dynamic_partitions(submissions_partitions.name, fresh)
    todo = set(plan.to_ingest)
    ordered = instance.get_dynamic_partitions(submissions_partitions.name)
    todo_keys = {plan.partition_key(sha) for sha in todo}
    _say(
        f"[2/3] ingesting {_count(len(todo), 'submission')}: "
        "landing > staged > anonymised > validated"
    )
    started = time.monotonic()
    for start, end, count in contiguous_ranges(ordered, todo_keys):
        result = execute_job(defs, instance, "ingest_submissions", (start, end), show=False)
        _say(f"      {_count(count, 'submission')} ingested (run {result.run_id[:8]})")
    with Warehouse(str(settings.warehouse_path)).connect() as con:
        read, accepted, quarantined, total_accepted = con.execute(
            "SELECT coalesce(sum(rows_read) FILTER (WHERE sha256 IN (SELECT unnest($todo::VARCHAR[]))), 0), "
            "coalesce(sum(rows_accepted) FILTER (WHERE sha256 IN (SELECT unnest($todo::VARCHAR[]))), 0), "
            "coalesce(sum(rows_quarantined) FILTER (WHERE sha256 IN (SELECT unnest($todo::VARCHAR[]))), 0), "
            "coalesce(sum(rows_accepted), 0) FROM submissions",
            {"todo": sorted(todo)},
        ).fetchone()
        failed = con.execute(
            "SELECT s.party_code || '/' || s.file_name || ': ' || f.reason "
            "FROM anonymisation_failures f JOIN submissions s USING (sha256) "
            "WHERE f.sha256 IN (SELECT unnest(?::VARCHAR[])) ORDER BY 1",
            [sorted(todo)],
        ).fetchall()
    if todo:
        seconds = time.monotonic() - started
        _say(
            f"      {read:,} rows read = {accepted:,} accepted + {quarantined:,} quarantined "
            f"({read / max(seconds, 0.001):,.0f} rows/s)"
        )
    if spec.ingest_only or (not total_accepted and not spec.as_of):
        _say(
            "[3/3] not verifying or publishing (--ingest-only): the next 'cbm run' will"
            if spec.ingest_only
            else "[3/3] nothing to verify or publish yet: no report has been accepted (see cbm status)"
        )
        summary = summarize(spec.workdir, spec.publish)
        summary["seconds"] = round(time.monotonic() - t0, 1)
        summary["failed_submissions"] = [f for (f,) in failed]
        return summary
    _say("[3/3] verifying, computing indicators, publishing")
    execute_job(defs, instance, "verify_reports")
    months = indicator_months(settings, instance)
    if months:
        execute_job(defs, instance, "compute_indicators", months)
        _say(f"      indicators for {months[0]} .. {months[1]}")
    execute_job(defs, instance, "publish_release")
    summary = summarize(spec.workdir, spec.publish)
    summary["seconds"] = round(time.monotonic() - t0, 1)
    summary["failed_submissions"] = [f for (f,) in failed]
    return summary


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


class Progress:
    """One self-replacing line on a terminal; nothing in a pipe (the final lines say it all)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.last = 0.0

    def update(self, text: str) -> None:
        now = time.monotonic()
        if self.live and now - self.last > 0.1:
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()
            self.last = now

    def clear(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _run_state(plan, spec: RunSpec) -> dict:
    """What a release depends on, cheaply: the submissions (with their signatures), the
    registry files (the method's policy among them), the as-of flag, the key, and the code
    itself. Equal to the last successful run's state with nothing to ingest = nothing new to
    publish."""
    code = hashlib.sha256()
    for package in ("cbm", "assets", "checks", "warehouse", "pipelines"):
        base = Path(__file__).resolve().parent.parent / package
        for path in sorted(base.rglob("*")):
            if path.suffix in (".py", ".sql", ".json", ".yaml"):
                st = path.stat()
                code.update(f"{path.relative_to(base)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
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
        "code": code.hexdigest(),
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
    from warehouse.db import Warehouse

    warehouse = workdir / "warehouse.duckdb"
    with Warehouse(str(warehouse)).connect() as con:
        row = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'rejected'), coalesce(sum(rows_read), 0), "
            "coalesce(sum(rows_accepted), 0), coalesce(sum(rows_quarantined), 0) FROM submissions"
        ).fetchone()
        alerts = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE alert_id NOT IN "
            "(SELECT alert_id FROM alert_acks)) FROM alerts"
        ).fetchone()
        tables = {
            t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        open_disputes = (
            con.execute("SELECT count(*) FROM disputes WHERE status = 'open'").fetchone()[0]
            if "disputes" in tables
            else 0
        )
    latest = rel.latest(publish)
    releases = (
        sorted(p.name for p in (publish / "releases").glob("r-*"))
        if (publish / "releases").exists()
        else []
    )
    from checks.offline_docs import data_docs_site

    docs = data_docs_site(workdir / "gx") / "index.html"
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
        "data_docs": str(docs) if docs.exists() else None,
        "signed": bool(latest) and (publish / "releases" / latest / rel.SIGNATURE).is_file(),
        "alerts": alerts[0],
        "alerts_unacknowledged": alerts[1],
        "open_disputes": open_disputes,
    }


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


# ---------------------------------------------------------------- commands


def cmd_generate(args) -> int:
    from cbm.generate import generate

    _check_folder("--out", Path(args.out), must_exist=False)
    out = generate(args.out, seed=args.seed, reports=args.reports)
    _say(
        f"wrote {out.files} files ({out.reports:,} report rows) to {out.inbox} and registries to {out.registry}"
    )
    return EXIT_OK


class _OutputMayGoUnread:
    """A standard stream of a command that finishes its work whoever reads it: once the
    reader has left (``cbm run | head -3``), what is still written goes to /dev/null instead
    of raising in the middle of the run (a run stopped by its own progress line had published
    nothing). The stream's descriptor is pointed at /dev/null, so its buffer empties there."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            _to_devnull(self._stream)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            _to_devnull(self._stream)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _to_devnull(stream) -> None:
    """Point the stream's descriptor at /dev/null: its reader has left, and what it still
    holds or is given goes nowhere instead of failing again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


@contextmanager
def _finish_whoever_reads():
    """``sys.stdout`` and ``sys.stderr`` as ``_OutputMayGoUnread`` for the duration."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _OutputMayGoUnread(sys.stdout), _OutputMayGoUnread(sys.stderr)
    try:
        yield
    finally:
        # what is still buffered goes out while a reader that left is no error
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved


def cmd_run(args) -> int:
    with _finish_whoever_reads():
        return _cmd_run(args)


def _cmd_run(args) -> int:
    for flag in ("inbox", "registry", "workdir", "publish"):
        if "://" in getattr(args, flag):
            raise CannotRun(
                f"--{flag} {getattr(args, flag)}: cbm run works on local folders; object "
                "storage (s3://) is for a Dagster deployment, see docs/deployment.md"
            )
    summary = run_pipeline(
        Path(args.inbox),
        Path(args.registry),
        Path(args.workdir),
        Path(args.publish),
        args.as_of,
        signing_key=args.signing_key,
        ingest_only=args.ingest_only,
        accept_change=args.accept_change,
        unsigned=args.unsigned,
    )
    _print_summary(summary)
    _say(f"\ndone in {summary['seconds']}s")
    if summary.get("failed_submissions"):
        failed = summary["failed_submissions"]
        print(
            f"cbm run: failed: {_count(len(failed), 'submission')} failed alone, the rest went "
            f"through: {'; '.join(failed)}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


STATUS_FIELDS = (
    "sha256",
    "party",
    "kind",
    "file_name",
    "status",
    "rows_read",
    "rows_accepted",
    "rows_quarantined",
    "reasons",
    "messages",
    "warnings",
    "duplicate_of",
    "superseded_by",
    "copy_of",
    "submission",
)


def cmd_status(args) -> int:
    from warehouse.db import Warehouse, sql_file

    _check_folder("--workdir", Path(args.workdir), must_exist=True)
    path = Path(args.workdir) / "warehouse.duckdb"
    if not path.exists():
        raise CannotRun(
            f"no warehouse in {args.workdir} (has 'cbm run' been run with this --workdir?)"
        )
    if (args.party or args.rule) and not args.quarantine:
        raise CannotRun("--party and --rule narrow --quarantine; add --quarantine")
    with Warehouse(str(path)).connect(read_only=True) as con:
        if args.quarantine:
            _check_narrowing(con, args)
            cursor = con.execute(
                sql_file("quarantine_listing"), {"party": args.party, "rule": args.rule}
            )
            names = [d[0] for d in cursor.description]
            return _print_quarantine(
                [dict(zip(names, r, strict=True)) for r in cursor.fetchall()], args
            )
        rows = con.execute(sql_file("submission_status")).fetchall()
    subs = [
        {k: (dict(v) if isinstance(v, dict) else v) for k, v in zip(STATUS_FIELDS, r, strict=True)}
        for r in rows
    ]
    totals = _status_totals(subs)
    waiting = _waiting(Path(args.workdir))
    if args.json:
        print(
            json.dumps(
                {"submissions": subs, "totals": totals, "waiting": waiting},
                indent=2,
                sort_keys=False,
            )
        )
        return EXIT_OK
    _show(
        f"{'sha256':<12} {'party':<12} {'kind':<12} {'status':<9} {'read':>7} {'accepted':>8} "
        f"{'quarant.':>8}  file"
    )
    for s in subs:
        _show(
            f"{s['sha256'][:12]} {s['party']:<12} {str(s['kind'] or '-'):<12} {s['status']:<9} "
            f"{s['rows_read']:>7,} {s['rows_accepted']:>8,} {s['rows_quarantined']:>8,}  {s['file_name']}"
        )
        if s["duplicate_of"]:
            _show(f"{'':13}a repeat of {s['duplicate_of']} (the same bytes): counted once")
        if s["superseded_by"]:
            fixed = next((t for t in subs if t["submission"] == s["superseded_by"]), None)
            name = f"{fixed['party']}/{fixed['file_name']}" if fixed else s["superseded_by"][:12]
            _show(f"{'':13}superseded by {name}, handed in again and {fixed and fixed['status']}")
        if s["copy_of"]:
            _show(f"{'':13}a copy of {s['copy_of']} (another party's bytes): rows quarantined")
        for rule, n in s["reasons"].items():
            _show(f"{'':13}{rule} ({n:,}): {s['messages'][rule]}")
        for warning in s["warnings"]:
            _show(f"{'':13}warning: {warning}")
    statuses = ", ".join(f"{n:,} {k}" for k, n in totals["by_status"].items())
    if totals["rejected_superseded"]:
        statuses += f", {totals['rejected_superseded']:,} of the rejected since handed in fixed"
    repeats = f" and {_count(totals['repeats'], 'repeat')}" if totals["repeats"] else ""
    _show(
        f"\nTotal: {_count(totals['submissions'], 'submission')}{repeats} ({statuses}); "
        f"{totals['rows_read']:,} rows read = {totals['rows_accepted']:,} accepted + "
        f"{totals['rows_quarantined']:,} quarantined"
    )
    if waiting:
        _say("")
        _say(f"Waiting for a later run (not landed yet): {len(waiting)}")
        for w in waiting:
            _show(f"  {w['path']}: {w['why']}")
    _say("Quarantined rows, in full: cbm status --workdir DIR --quarantine [--party P] [--rule R]")
    return EXIT_OK


def _waiting(workdir: Path) -> list[dict]:
    """What the last look at the inbox left for a later run (``WAITING.json`` in the landing
    area: a party's files beyond its budget, files still being written)."""
    from cbm.storage import location

    store = location(os.environ.get("CBM_LANDING") or str(workdir / "landing"))
    try:
        return json.loads(store.read_bytes("WAITING.json")) if store.exists("WAITING.json") else []
    except (OSError, ValueError):
        return []


def _check_narrowing(con, args) -> None:
    """``--party``/``--rule`` that name nothing in this workdir are a mistake (a typo, a code
    in lower case), not an empty answer: one line naming the ones there are."""
    for flag, value, sql in (
        ("--party", args.party, "SELECT DISTINCT party_code FROM submissions"),
        ("--rule", args.rule, "SELECT DISTINCT rule FROM quarantine WHERE severity = 'critical'"),
    ):
        if value is None:
            continue
        known = sorted(v for (v,) in con.execute(sql).fetchall() if v)
        if value not in known:
            near = [k for k in known if k.lower() == value.lower()]
            hint = f" (did you mean {near[0]}?)" if near else ""
            what = (
                ("no submission from that party", "parties")
                if flag == "--party"
                else ("no quarantined row with that rule", "rules")
            )
            raise CannotRun(
                f"{flag} {printable(value)}: {what[0]} in this workdir{hint}; {what[1]} here: "
                + (", ".join(known) or "none")
            )


def _status_totals(subs: list[dict]) -> dict:
    """Counts over submissions (a repeat is a path, not a submission); a rejection that a
    fixed re-send superseded is counted apart."""
    firsts = [s for s in subs if not s["duplicate_of"]]
    by_status: dict[str, int] = {}
    for s in firsts:
        by_status[s["status"]] = by_status.get(s["status"], 0) + 1
    return {
        "submissions": len(firsts),
        "by_status": dict(sorted(by_status.items())),
        "rejected_superseded": sum(1 for s in firsts if s["superseded_by"]),
        "repeats": len(subs) - len(firsts),
        **{k: sum(s[k] for s in subs) for k in ("rows_read", "rows_accepted", "rows_quarantined")},
    }


def _print_quarantine(rows: list[dict], args) -> int:
    if args.json:
        print(json.dumps({"quarantine": rows}, indent=2, sort_keys=False))
        return EXIT_OK
    for r in rows:
        where = "whole file" if r["row_number"] is None else f"row {r['row_number']}"
        column = f" {r['column_name']}={r['value']!r}" if r["column_name"] else ""
        _show(
            f"{r['submission']} {r['party']}/{r['file_name']} {where} [{r['rule']}]{column}: "
            f"{r['reason']}"
        )
    narrowed = " ".join(f"--{k} {v}" for k, v in (("party", args.party), ("rule", args.rule)) if v)
    _show(f"{len(rows):,} quarantined rows and files{' (' + narrowed + ')' if narrowed else ''}")
    return EXIT_OK


def cmd_verify_release(args) -> int:
    from cbm.registry import RegistryError, load_parties
    from cbm.release import (
        check_chain,
        check_publish_root,
        check_signatures,
        release_folder,
        verify_release,
    )

    path = Path(args.path)
    if not path.is_dir():
        raise CannotRun(f"{path} does not exist or is not a folder (a release or a publish folder)")
    parties = None
    if args.keys:
        try:
            parties = load_parties(Path(args.keys))
        except RegistryError as exc:
            raise CannotRun(f"--keys {exc}") from exc
    elif args.require_cosigners:
        raise CannotRun("--require-cosigners needs --keys parties.yaml (the parties' public keys)")
    publish = (
        path if (path / "LATEST").is_file() and not (path / "manifest.json").exists() else None
    )
    path = release_folder(path)
    if args.since and path.parent.name != "releases":
        raise CannotRun(
            f"--since needs the publish folder (or a release inside its releases/): {path} has no "
            "sibling releases to follow"
        )
    ok, problems = verify_release(path)
    notes: list[str] = []
    if parties is not None and (path / "manifest.json").is_file():
        more, notes = check_signatures(path, parties, args.require_cosigners)
        problems += more
    if (path / "manifest.json").is_file() and path.parent.name == "releases":
        more, chain_notes = check_chain(path, args.since)
        problems, notes = problems + more, notes + chain_notes
    if publish is not None:
        more, root_notes = check_publish_root(publish, path)
        problems, notes = problems + more, notes + root_notes
    for p in problems:
        _say(f"FAIL: {p}")
    if problems:
        return EXIT_FAILED
    checked = "integrity" + (", authenticity" if parties is not None else "")
    if args.require_cosigners:
        checked += f", {args.require_cosigners} co-signature(s)"
    _say(f"OK: {path} ({checked}){': ' + '; '.join(notes) if notes else ''}")
    if parties is None:
        unchecked = sorted(
            p.relative_to(path).as_posix()
            for p in [path / "manifest.json.sig", *sorted((path / "cosign").glob("*.sig"))]
            if p.is_file()
        )
        _show(
            "NOTE: authenticity not checked: "
            + (f"{', '.join(unchecked)} not verified" if unchecked else "the release is unsigned")
            + " (give --keys parties.yaml to check the signatures)"
        )
    if not args.since and path.parent.name == "releases":
        _show(
            "NOTE: give --since RELEASE_ID (the release you saw last) to check that this one "
            "follows it: a LATEST moved back or a forked history shows only that way"
        )
    return EXIT_OK


def cmd_rederive(args) -> int:
    from pipelines.rederive import RederiveError, rederive

    bundle = Path(args.bundle)
    if not bundle.is_dir():
        raise CannotRun(f"{bundle} does not exist or is not a folder (a release bundle)")
    if args.workdir:
        workdir = Path(args.workdir)
        _check_folder("--workdir", workdir, must_exist=False)
        if workdir.is_dir() and any(workdir.iterdir()):
            raise CannotRun(f"--workdir {workdir}: not empty (re-derivation starts from nothing)")
    try:
        problems = rederive(
            bundle, Path(args.release), Path(args.workdir) if args.workdir else None, say=_say
        )
    except RederiveError as exc:
        raise CannotRun(str(exc)) from None
    for p in problems:
        _say(f"FAIL: {p}")
    if problems:
        return EXIT_FAILED
    _say(f"OK: {args.release} re-derived byte for byte from {bundle}")
    return EXIT_OK


def cmd_cosign(args) -> int:
    from cbm.release import COSIGN_DIR, signing_contexts, verify_release
    from cbm.signatures import SigningError, SigningKey

    path = Path(args.path)
    if not (path / "manifest.json").is_file():
        raise CannotRun(f"{path} is not a release folder (no manifest.json)")
    try:
        key = SigningKey(Path(args.key))
    except SigningError as exc:
        raise CannotRun(f"--key {exc}") from exc
    if key.party != args.party:
        raise CannotRun(f"--key {args.key} is {key.party}'s key, not {args.party}'s")
    ok, problems = verify_release(path)
    if not ok:
        for p in problems:
            _say(f"FAIL: {p}")
        raise RuntimeError(f"{path} does not match its manifest: not co-signed")
    from cbm.files import write_atomic

    (path / COSIGN_DIR).mkdir(exist_ok=True)
    out = path / COSIGN_DIR / f"{args.party}.sig"
    manifest = (path / "manifest.json").read_bytes()
    write_atomic(out, key.sign(manifest, signing_contexts(manifest)[1](args.party)))
    _say(f"co-signed {path.name} as {args.party}: {out}")
    return EXIT_OK


def cmd_keygen_pseudonym(args) -> int:
    from cbm.protection import load_key, new_key_file

    out = Path(args.out)
    _check_folder("--out", out.parent, must_exist=False)
    if out.exists() and not args.force:
        raise CannotRun(f"{out} exists; pass --force to replace it (pseudonyms will change)")
    key = load_key({"CBM_KEY_FILE": str(new_key_file(out, args.key_version))})
    _say(
        f"wrote pseudonymisation key {key.version} ({key.fingerprint}) to {out}; keep it outside "
        f"the repository and set CBM_KEY_FILE={out} (a warehouse built with another key: "
        "'cbm rotate-key --new-key FILE')"
    )
    return EXIT_OK


def cmd_rotate_key(args) -> int:
    """Re-pseudonymise a warehouse from the key in CBM_KEY_FILE to ``--new-key``."""
    from cbm.protection import KeyError_, load_key
    from warehouse.db import Warehouse
    from warehouse.rotation import RotationError, rotate_key

    workdir = Path(args.workdir)
    _check_folder("--workdir", workdir, must_exist=True)
    path = workdir / "warehouse.duckdb"
    if not path.is_file():
        raise CannotRun(f"no warehouse in {workdir} (has 'cbm run' been run with this --workdir?)")
    try:
        old = load_key()
    except KeyError_ as exc:
        raise CannotRun(f"the current key: {exc}") from exc
    try:
        new = load_key({"CBM_KEY_FILE": args.new_key})
    except KeyError_ as exc:
        raise CannotRun(f"--new-key: {exc}") from exc
    with _workdir_lock(workdir, wait_seconds=600), Warehouse(str(path)).connect() as con:
        try:
            done = rotate_key(con, old, new, workdir / "staged")
        except RotationError as exc:
            raise CannotRun(str(exc)) from exc
        _forget_last_run_state(workdir)  # the next run verifies and publishes again
    _say(
        f"rotated {path} from {done.old[0]} ({done.old[1]}) to {done.new[0]} ({done.new[1]}): "
        f"{_count(done.parties, 'party pseudonym')}, {_count(done.technical_keys, 'technical key')}, "
        f"{done.rows:,} values"
    )
    _say(
        f"next: set CBM_KEY_FILE={args.new_key} and run 'cbm run'; it verifies again and its "
        "release names the rotation (its event ids change: changes/events lists each successor)"
    )
    return EXIT_OK


def cmd_keygen(args) -> int:
    from cbm.signatures import new_party_key

    out = Path(args.out)
    _check_folder("--out", out.parent, must_exist=False)
    if out.exists() and not args.force:
        raise CannotRun(f"{out} exists; pass --force to replace it")
    public = new_party_key(args.party, out)
    _say(f"wrote {args.party}'s signing key to {out} (keep it private)")
    _say(f"add to {args.party}'s entry in parties.yaml:  public_key: {public}")
    return EXIT_OK


def _delivery_state(deliveries: list[dict] | None) -> str:
    """One word per notifier: delivered, or failed with the last reason."""
    if not deliveries:
        return "not sent (no notifier)"
    by_notifier: dict[str, dict] = {}
    for d in deliveries:
        if not by_notifier.get(d["notifier"], {}).get("ok"):
            by_notifier[d["notifier"]] = d
    return "; ".join(
        f"{n} delivered" if d["ok"] else f"{n} FAILED ({d['detail']})"
        for n, d in sorted(by_notifier.items())
    )


def _report_acknowledgement(workdir: Path, still_open: int) -> str:
    """Record a new evaluation of the check alerts_acknowledged in the deployment's Dagster
    instance (DAGSTER_HOME, or <workdir>/dagster_home), on the alerts' latest materialization,
    so the UI shows the acknowledgement at once. Says what it did in one line."""
    home = Path(os.environ.get("DAGSTER_HOME") or workdir / "dagster_home")
    if not (home / "dagster.yaml").is_file():
        return (
            f"the UI's check alerts_acknowledged follows at the next alerts update (no Dagster "
            f"instance at {home}; set DAGSTER_HOME to the deployment's to update it now)"
        )
    import dagster as dg

    from cbm.alerts import CHECK, acknowledgement
    from compat.dagster import AssetCheckEvaluationTargetMaterializationData

    key = dg.AssetKey("alerts")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        latest = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key), limit=1
        ).records
        if not latest:
            return f"the alerts asset has no materialization in {home}: nothing to update"
        record = latest[0]
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=key,
                check_name=CHECK,
                passed=still_open == 0,
                severity=dg.AssetCheckSeverity.WARN,
                description=acknowledgement(still_open),
                metadata={"unacknowledged": still_open},
                target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
                ),
            )
        )
    return f"the UI's check alerts_acknowledged now says: {still_open} not acknowledged ({home})"


def cmd_alerts(args) -> int:
    """List alerts (newest first) or acknowledge one. Reads the warehouse only; an
    acknowledgement is one row added to alert_acks."""
    from datetime import UTC, datetime

    import duckdb

    from warehouse.db import Warehouse, sql_file

    workdir = Path(args.workdir)
    _check_folder("--workdir", workdir, must_exist=True)
    path = workdir / "warehouse.duckdb"
    if not path.exists():
        raise CannotRun(f"no warehouse in {workdir} (has 'cbm run' been run with this --workdir?)")
    if (args.ack is None) != (args.by is None):
        raise CannotRun("--ack ID and --by PARTY go together: who acknowledges which alert")
    if args.ack is not None:
        with Warehouse(str(path)).connect() as con:
            if not con.execute("SELECT 1 FROM alerts WHERE alert_id = ?", [args.ack]).fetchone():
                raise CannotRun(
                    f"--ack {args.ack}: no such alert in {path} ('cbm alerts' lists them)"
                )
            if not con.execute(
                "SELECT 1 FROM party_directory WHERE code = ?", [args.by]
            ).fetchone():
                raise CannotRun(
                    f"--by {args.by}: not a party code of the registry this workdir ran with"
                )
            done = con.execute(
                "SELECT strftime(acked_at, '%Y-%m-%dT%H:%M:%SZ') FROM alert_acks "
                "WHERE alert_id = ? AND by_party = ?",
                [args.ack, args.by],
            ).fetchone()
            if done:
                _say(
                    f"{args.ack} was already acknowledged by {args.by} at {done[0]}: kept as it was"
                )
                return EXIT_OK
            con.execute(
                "INSERT INTO alert_acks VALUES (?, ?, ?, ?)",
                [args.ack, args.by, datetime.now(UTC), args.note],
            )
            still_open = con.execute(
                "SELECT count(*) FROM alerts WHERE alert_id NOT IN (SELECT alert_id FROM alert_acks)"
            ).fetchone()[0]
        _say(f"acknowledged {args.ack} by {args.by}; {still_open} alert(s) still unacknowledged")
        _say(_report_acknowledgement(workdir, still_open))
        return EXIT_OK
    with Warehouse(str(path)).connect(read_only=True) as con:
        try:
            cursor = con.execute(sql_file("alert_listing"))
        except duckdb.CatalogException:  # a warehouse from before alerts existed
            alerts = []
        else:
            names = [d[0] for d in cursor.description]
            alerts = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    if args.open:
        alerts = [a for a in alerts if not a["acks"]]
    if args.json:
        print(json.dumps({"alerts": alerts}, indent=2))
        return EXIT_OK
    if not alerts:
        _say("no alerts" + (" open" if args.open else "") + f" in {workdir}")
        return EXIT_OK
    for a in alerts:
        acked = ", ".join(f"{k['by']} at {k['at']}" for k in a["acks"]) or "NOT acknowledged"
        _say(
            f"{a['alert_id']}  {a['subject']} / {a['counterpart']}: level {a['previous_level']} -> "
            f"{a['level']} ({a['status']}, {a['reason']}) as of {a['as_of']}"
        )
        _say(f"{'':20}events: {' '.join(a['evidence'])}")
        _say(f"{'':20}{_delivery_state(a['deliveries'])}; {acked}")
    n_open = sum(1 for a in alerts if not a["acks"])
    _say(f"{len(alerts)} alert(s), {n_open} not acknowledged")
    return EXIT_OK


def cmd_sign(args) -> int:
    from cbm.signatures import SigningError, sign_file

    for name in args.files:
        try:
            sig = sign_file(Path(args.key), Path(name))
        except SigningError as exc:
            raise CannotRun(str(exc)) from exc
        _say(f"signed {name} -> {sig}")
    return EXIT_OK


def cmd_docs(args) -> int:
    """Serve the Data Docs site over http on 127.0.0.1 until interrupted."""
    import functools
    import http.server
    import urllib.parse

    from checks.offline_docs import data_docs_site

    workdir = Path(args.workdir)
    _check_folder("--workdir", workdir, must_exist=True)
    site = data_docs_site(workdir / "gx")
    if not (site / "index.html").is_file():
        raise CannotRun(f"no Data Docs in {workdir} yet: run 'cbm run' first ({site})")

    releases = None
    if args.publish:
        _check_folder("--publish", Path(args.publish), must_exist=True)
        releases = (Path(args.publish) / "releases").resolve()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path):
            # /releases/<id>/... is the publish folder's (the release reports), /calendar.ics
            # its subscription copy of the newest calendar; the rest Data Docs
            if releases is not None and path.split("?", 1)[0] == "/calendar.ics":
                return str(releases.parent / "calendar.ics")
            if releases is not None and path.startswith("/releases/"):
                wanted = urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0])
                target = (releases / wanted.removeprefix("/releases/")).resolve()
                inside = target == releases or releases in target.parents
                return str(target if inside else releases / "not-found")  # no way out
            return super().translate_path(path)

        def log_message(self, *args):  # one line per page would drown the address
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # a browser that leaves a page before it has loaded hangs up mid-answer
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    try:
        server = Server(("127.0.0.1", args.port), functools.partial(Quiet, directory=str(site)))
    except OSError as exc:
        raise CannotRun(
            f"--port {args.port}: cannot listen on 127.0.0.1 ({exc.strerror})"
        ) from None
    _say(f"Data Docs of {workdir}: http://127.0.0.1:{args.port}/index.html (Ctrl-C stops)")
    if releases is not None:
        _say(f"release reports: http://127.0.0.1:{args.port}/releases/RELEASE_ID/report/index.html")
        _say(f"security calendar (subscribe): http://127.0.0.1:{args.port}/calendar.ics")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK


def cmd_demo(args) -> int:
    from cbm.generate import generate
    from cbm.protection import new_key_file

    base = Path(args.dir)
    if not os.environ.get("CBM_KEY_FILE") and not os.environ.get("CBM_PSEUDONYM_KEY"):
        key = base / "secrets" / "pseudonym.key"
        if not key.exists():
            new_key_file(key)
            _say(
                f"generated a local demo pseudonymisation key at {key} (a real deployment keeps its own, outside the repository)"
            )
        os.environ["CBM_KEY_FILE"] = str(key.resolve())
    os.environ.setdefault("DAGSTER_HOME", str((base / "dagster_home").resolve()))
    out = generate(base, seed=args.seed, reports=args.reports)
    _say(f"generated {out.files} sample files ({out.reports:,} report rows) in {out.inbox}")
    signing_key = _demo_publisher_key(base, out.registry, out.inbox)
    summary = run_pipeline(
        out.inbox, out.registry, base / "work", base / "publish", None, signing_key=str(signing_key)
    )
    _print_summary(summary)
    _say("")
    _say("Next:")
    _say(f"  cbm status --workdir {base / 'work'}            every submission, accepted or why not")
    _say(f"  cbm alerts --workdir {base / 'work'} --open     threshold alerts nobody acknowledged")
    _say(f"  cbm verify-release {summary['release_path']} --keys {out.registry / 'parties.yaml'}")
    _say(
        f"  cbm rederive {base / 'work' / 'bundles' / summary['latest_release']} "
        f"--release {summary['release_path']}   as a member party would, without the key"
    )
    query = "print(duckdb.sql(f'SELECT * FROM read_parquet({sys.argv[1]!r}, hive_partitioning=true) LIMIT 5'))"
    _say(
        f"  .venv/bin/python -c \"import duckdb, sys; {query}\" '{summary['release_path']}/indicators/*/*.parquet'"
    )
    _say(
        "  make ui                                       the same runs, assets and checks in the Dagster UI,\n"
        "                                                with the Data Docs on http://127.0.0.1:8765"
    )
    _say(f"\ndone in {summary['seconds']}s")
    return EXIT_OK


EPILOG = """environment:
  CBM_KEY_FILE          the pseudonymisation key file (cbm keygen-pseudonym), kept outside
                        the repository; or CBM_PSEUDONYM_KEY=<version>:<hex> (32+ hex digits)
  CBM_SIGNING_KEY_FILE  the publisher's signing key file (cbm keygen), as --signing-key
  DAGSTER_HOME          Dagster's instance (default: <workdir>/dagster_home)
  CBM_GX_KEEP_RESULTS   validation results kept per suite and table in Data Docs (default 30)
  CBM_DOCS_URL          where 'cbm docs' serves the Data Docs, for the UI's links
                        (default http://127.0.0.1:8765)
  CBM_DEBUG=1           print the traceback of an unexpected error

exit codes:
  0  success (quarantined rows are not a failure)
  1  the run started but a step failed, or a release does not verify
  2  it could not start: a wrong path, flag, registry value or key (one line says which)
  141  the reader of its output left first (`cbm status | head`), quietly; `cbm run`
       instead finishes its run unheard and exits as it would have
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the mistake, where, and what to type instead."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        raise _UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


class _UsageError(Exception):
    pass


def _unknown_options(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """Name the first option no command knows, with the nearest known one."""
    import difflib

    known = {opt for action in parser._actions for opt in action.option_strings}
    for sub in _subparsers(parser).values():
        known |= {opt for action in sub._actions for opt in action.option_strings}
    for word in argv:
        flag = word.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            near = difflib.get_close_matches(flag, sorted(known), n=1)
            return f"unknown option {flag}" + (f" (did you mean {near[0]}?)" if near else "")
    return None


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _whole_number(minimum: int, maximum: int | None = None):
    wanted = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"

    def parse(text: str) -> int:
        number = int(text) if text.lstrip("-").isdigit() else None
        if number is None or number < minimum or (maximum is not None and number > maximum):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number {wanted}")
        return number

    return parse


def _demo_publisher_key(base: Path, registry: Path, inbox: Path) -> Path:
    """The demo's secretariat signs its releases and its own submissions (its rulings on
    disputes): a local key (made once, beside the demo's pseudonymisation key) whose public
    key the demo's parties.yaml registers."""
    import yaml

    from cbm.signatures import SigningKey, new_party_key, sign_file

    key_file = base / "secrets" / "secretariat.key"
    if not key_file.exists():
        new_party_key("SECRETARIAT", key_file)
        _say(f"generated the demo publisher's signing key at {key_file}")
    parties_file = registry / "parties.yaml"
    parties = yaml.safe_load(parties_file.read_text())
    for party in parties:
        if party["class"] == "secretariat":
            party["public_key"] = SigningKey(key_file).public_key
            for name in sorted((inbox / party["code"]).glob("*_*.*")):
                if name.suffix != ".sig":
                    sign_file(key_file, name)
    parties_file.write_text(yaml.safe_dump(parties, sort_keys=False))
    return key_file


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cbm",
        description="cbm-verify: verification pipeline for confidence-building measures",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"cbm-verify {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, text: str, func) -> argparse.ArgumentParser:
        parser = sub.add_parser(
            name,
            help=text,
            description=text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.set_defaults(func=func)
        return parser

    g = command("generate", "write a synthetic inbox and registries", cmd_generate)
    g.add_argument("--out", required=True, help="folder to write inbox/ and registry/ into")
    g.add_argument(
        "--seed", type=int, default=7, help="random seed (default 7): same seed, same files"
    )
    g.add_argument(
        "--reports",
        type=_whole_number(1),
        default=2000,
        help="how many incident reports (default 2000); compliance reports, attestations, "
        "revisions and a few bad rows and files come on top",
    )
    r = command("run", "one full run: land, ingest, verify, publish", cmd_run)
    r.add_argument("--inbox", required=True, help="the inbox: <inbox>/<PARTY>/<kind>_*.<ext>")
    r.add_argument(
        "--registry", required=True, help="folder with parties.yaml, commitments.yaml, policy.yaml"
    )
    r.add_argument(
        "--workdir", required=True, help="landing area, warehouse and Dagster instance (created)"
    )
    r.add_argument("--publish", required=True, help="where releases are published (created)")
    r.add_argument(
        "--as-of",
        help="the release's 'now', ISO 8601 with an offset (e.g. 2026-10-31T00:00:00+00:00); "
        "default: the latest timestamp among accepted reports",
    )
    r.add_argument(
        "--signing-key",
        help="the publisher's key file ('cbm keygen --party <secretariat code>'), kept outside "
        "the repository; default CBM_SIGNING_KEY_FILE. Required when parties.yaml names the "
        "publisher's public_key (unless --unsigned); run again with it to sign a release "
        "published unsigned",
    )
    r.add_argument(
        "--unsigned",
        action="store_true",
        help="publish unsigned on purpose although parties.yaml names the publisher's key "
        "(the manifest says so)",
    )
    r.add_argument(
        "--accept-change",
        metavar="REASON",
        help="publish a release the release guard held (it removes or revises more than "
        "policy.yaml release_guard allows), recording REASON in its manifest",
    )
    r.add_argument(
        "--ingest-only",
        action="store_true",
        help="land and ingest what is new, then stop; the next run without it verifies and "
        "publishes (e.g. ingest through the day, publish once)",
    )
    s = command("status", "every submission seen, and why rows were quarantined", cmd_status)
    s.add_argument("--workdir", required=True, help="the workdir of 'cbm run'")
    s.add_argument("--json", action="store_true", help="one JSON document on stdout")
    s.add_argument(
        "--quarantine",
        action="store_true",
        help="list every quarantined row and file instead: submission, party, file, row, rule, "
        "column, value and the full reason",
    )
    s.add_argument("--party", help="with --quarantine: only this party's submissions")
    s.add_argument("--rule", help="with --quarantine: only this rule (e.g. severity_range)")
    al = command(
        "alerts",
        "threshold alerts (newest first): delivery and acknowledgement; --ack to acknowledge",
        cmd_alerts,
    )
    al.add_argument("--workdir", required=True, help="the workdir of 'cbm run'")
    al.add_argument("--open", action="store_true", help="only alerts nobody acknowledged")
    al.add_argument("--json", action="store_true", help="one JSON document on stdout")
    al.add_argument("--ack", metavar="ID", help="acknowledge this alert (with --by)")
    al.add_argument("--by", metavar="PARTY", help="the registered party code acknowledging it")
    al.add_argument("--note", help="with --ack: a note kept with the acknowledgement")
    rd = command(
        "rederive",
        "recompute a release from its member bundle and compare every file byte for byte",
        cmd_rederive,
    )
    rd.add_argument("bundle", help="the member bundle: <workdir>/bundles/<release_id>")
    rd.add_argument(
        "--release",
        required=True,
        help="the release to compare with: a release folder, or a publish folder (its LATEST)",
    )
    rd.add_argument(
        "--workdir",
        help="an empty or new folder to recompute in (kept afterwards); default a temporary folder, removed",
    )
    v = command(
        "verify-release",
        "check a release (or a publish folder's LATEST) against its manifest",
        cmd_verify_release,
    )
    v.add_argument("path", help="a release folder, or a publish folder (its LATEST release)")
    v.add_argument(
        "--keys",
        help="parties.yaml: check the publisher's signature (the secretariat's public_key) and "
        "the co-signatures too; without it only integrity is checked",
    )
    v.add_argument(
        "--require-cosigners",
        type=_whole_number(0),
        default=0,
        help="valid co-signatures by distinct registered parties other than the publisher "
        "that the release must carry (default 0)",
    )
    v.add_argument(
        "--since",
        metavar="RELEASE_ID",
        help="the release you saw last: this one's chain of previous releases must reach it "
        "(a LATEST moved back, or another history, fails)",
    )
    cs = command(
        "cosign", "sign a release this party re-derived: writes cosign/<PARTY>.sig", cmd_cosign
    )
    cs.add_argument("--key", required=True, help="the party's key file ('cbm keygen')")
    cs.add_argument("--party", required=True, help="the party code the key belongs to")
    cs.add_argument("path", help="the release folder")
    k = command("keygen-pseudonym", "write a new pseudonymisation key file", cmd_keygen_pseudonym)
    k.add_argument("--out", required=True, help="the key file to write (mode 0600)")
    k.add_argument(
        "--key-version",
        help="recorded in every release (default: k- and the start of the key's fingerprint, "
        "so every new key has its own)",
    )
    k.add_argument("--force", action="store_true", help="replace an existing key file")
    rk = command(
        "rotate-key",
        "re-pseudonymise the warehouse with a new pseudonymisation key (the current one in "
        "CBM_KEY_FILE); the next release records the rotation",
        cmd_rotate_key,
    )
    rk.add_argument("--workdir", required=True, help="the workdir of 'cbm run'")
    rk.add_argument(
        "--new-key", required=True, help="the new key file ('cbm keygen-pseudonym --out FILE')"
    )
    kg = command(
        "keygen",
        "a party's Ed25519 signing key (private file + public key to register)",
        cmd_keygen,
    )
    kg.add_argument("--party", required=True, help="the party code, as in parties.yaml")
    kg.add_argument("--out", required=True, help="the private key file to write (mode 0600)")
    kg.add_argument("--force", action="store_true", help="replace an existing key file")
    sg = command("sign", "write FILE.sig (detached Ed25519 signature) for each file", cmd_sign)
    sg.add_argument("--key", required=True, help="the key file written by 'cbm keygen'")
    sg.add_argument("files", nargs="+", help="the files to sign")
    dd = command(
        "docs",
        "serve the Great Expectations Data Docs on localhost, for the Dagster UI's data_docs links",
        cmd_docs,
    )
    dd.add_argument("--workdir", required=True, help="the workdir of 'cbm run'")
    dd.add_argument(
        "--publish",
        help="also serve this publish folder's release reports under /releases/ (the links of "
        "the release asset)",
    )
    dd.add_argument(
        "--port",
        type=_whole_number(1, 65535),
        default=8765,
        help="port on 127.0.0.1 (default 8765, the address the data_docs links use)",
    )
    d = command("demo", "generate a sample inbox and run the whole pipeline on it", cmd_demo)
    d.add_argument("--dir", default=".cbm/demo", help="the demo's folder (default .cbm/demo)")
    d.add_argument("--seed", type=int, default=7, help="random seed of the sample (default 7)")
    d.add_argument(
        "--reports", type=_whole_number(1), default=2000, help="incident reports (default 2000)"
    )
    return p


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("cbm-verify")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        unknown = _unknown_options(parser, argv)
        print(f"cbm: {unknown}" if unknown else str(exc), file=sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except CannotRun as exc:
        print(f"cbm {args.command}: cannot run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as exc:
        print(f"cbm {args.command}: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # an unexpected error still ends in one line (traceback on demand)
        if isinstance(exc, BrokenPipeError) and _stdout_gone():
            raise  # the reader of our output left: console_main ends quietly
        if os.environ.get("CBM_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(
            f"cbm {args.command}: failed: {exc.__class__.__name__}: {first} "
            "(set CBM_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED


# How a command ends when the reader of its output leaves first (`cbm status | head`): as
# the shell reports a process ended by SIGPIPE, without a word.
EXIT_READER_GONE = 128 + 13


def _stdout_gone() -> bool:
    """Whether standard output is a pipe or socket whose reader has left (the kernel reports
    an error or hang-up on it; a failed write has already dropped what it held)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no real stdout
        return False


def console_main() -> None:
    """Console-script entry point.

    SIGPIPE stays ignored, as Python sets it: a connection that a peer closes (a browser
    leaving a `cbm docs` page, an alert endpoint, object storage) raises an error where it
    happened instead of ending the process. Only a reader of standard output that leaves
    first ends a command, quietly (``EXIT_READER_GONE``).

    Exits with ``os._exit`` after flushing: DuckDB's bindings print "nanobind: leaked ..."
    warnings at interpreter shutdown while GX still holds type objects; they say nothing about
    the run and would bury its last line.
    """
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        _to_devnull(sys.stdout)
        code = EXIT_READER_GONE
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console_main()
