"""The one runner: how an ingestion plan and the publication chain become Dagster runs.

Every way of running the pipeline goes through here, so the order and batching of runs is
decided once:

- ``ingestion_batches``: the submissions a plan names to ingest, as one run per stretch of
  consecutive submission partitions (``IntakePlan.batches``), each with its partition range,
  its tags and its run key (the same batch is never requested twice).
- The inbox sensor turns each batch into a ``RunRequest`` (``run_request``); Dagster launches
  it.
- ``cbm run`` and ``cbm rederive`` execute the same batches, then the publication chain
  (``PUBLICATION``: verify, then the indicators of the months with data and the release in
  one run), in-process (``InProcess``). ``cbm run`` verifies in its last ingestion batch's
  run (``INGEST_AND_VERIFY``): a run per partitioned stage, two in all.

This module imports Dagster only inside its functions: ``cbm status`` imports the runner's
package without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pipelines.output import _count, _say, interrupt_named

INGEST = "ingest_submissions"
VERIFY = "verify_reports"
INGEST_AND_VERIFY = "ingest_and_verify"  # cbm run's first run: the two above in one
REDERIVE_VERIFY = "rederive_verification"  # a member's re-derivation: from the bundle's tables
PUBLISH = "publish_release"
INDICATORS_AND_RELEASE = "indicators_and_release"  # compute_indicators and publish_release
# the publication chain after ingestion: verification, then the month partitions that have
# verdicts or events and the release, in one run (the release alone when no month has data)
PUBLICATION = (VERIFY, INDICATORS_AND_RELEASE)

# the code location's name in workspace.yaml: in-process runs are filed under it
LOCATION_NAME = "cbm_verify"

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"

# Dagster's own console log stays quiet: cbm prints its progress lines itself.
# A failed step is told in one line by cbm (``_failure_reason``), never as Dagster's error log
# with its stack trace; the whole event log stays in the instance for the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass(frozen=True)
class PlannedRun:
    """One ingestion run: the partitions it covers and the key that makes it happen once."""

    start: str
    end: str
    size: int
    run_key: str

    @property
    def tags(self) -> dict[str, str]:
        """The partition range as Dagster's run tags."""
        return {RANGE_START: self.start, RANGE_END: self.end}


@dataclass(frozen=True)
class Ingested:
    """What ``InProcess.ingest`` ran: the run that also verified, if asked; when its
    verification started (Unix time), where the ingestion's rate stops counting."""

    verified: object | None = None
    verification_started: float | None = None


def ingestion_batches(plan, known: list[str]) -> tuple[list[PlannedRun], list[str]]:
    """The ingestion runs a plan asks for, and the submission partitions to add first.

    ``known``: the submission partitions the instance has, in its order; the plan's new ones
    are added after them, and the runs cover stretches of that order."""
    have = set(known)
    new = [key for key in plan.partition_keys if key not in have]
    runs = [
        PlannedRun(b.start, b.end, len(b.keys), b.run_key) for b in plan.batches([*known, *new])
    ]
    return runs, new


def run_request(run: PlannedRun, job_name: str):
    """The sensor's request for one planned run of ``job_name``, naming the job's assets."""
    import dagster as dg

    from pipelines.jobs import JOB_ASSETS

    selection = [dg.AssetKey(name) for name in JOB_ASSETS[job_name]]
    request = {"run_key": run.run_key, "job_name": job_name, "asset_selection": selection}
    if run.size == 1:
        return dg.RunRequest(partition_key=run.start, **request)
    return dg.RunRequest(tags=run.tags, **request)


class InProcess:
    """The planned runs executed in this process, on ``instance``, as ``cbm run`` and
    ``cbm rederive`` do; each run is filed under the code location, beside the UI's runs."""

    def __init__(self, defs, instance, show: bool = True):
        from compat.dagster import streams_to_files

        self.defs, self.instance, self.show = defs, instance, show
        streams_to_files()  # the steps' output to the UI's files only (M49)

    def ingest(self, plan, then_verify: bool = False) -> Ingested:
        """Add the plan's new partitions, then run its ingestion batches; ``then_verify``: the
        last batch's run verifies too (``INGEST_AND_VERIFY``): that run is ``verified``."""
        from assets.partitions import submissions_partitions

        name = submissions_partitions.name
        runs, new = ingestion_batches(plan, self.instance.get_dynamic_partitions(name))
        if new:
            self.instance.add_dynamic_partitions(name, new)
        result = None
        for i, run in enumerate(runs):
            verifying = then_verify and i == len(runs) - 1
            result = self.execute(INGEST_AND_VERIFY if verifying else INGEST, run.tags)
            done = "ingested and verified" if verifying else "ingested"
            _say(f"      {_count(run.size, 'submission')} {done} (run {result.run_id[:8]})")
        verified = result if then_verify and runs else None
        return Ingested(verified, self._verification_started(verified))

    def _verification_started(self, result) -> float | None:
        """When the run's first verification step started (Unix time), from the run's step
        statistics: where its ingestion ended."""
        if result is None:
            return None
        for step in self.instance.get_run_step_stats(result.run_id):
            if step.step_key == "release_context" and step.start_time:
                return step.start_time
        return None

    def verify(self, verify: str = VERIFY):
        """Verification in a run of its own (``verify``: this deployment's, when nothing was
        ingested, or a re-derivation's), printed; its run."""
        return self.execute(verify, show=self.show)

    def publish(self, settings) -> None:
        """After verification: the indicator months with data, and the release."""
        months = indicator_months(settings, self.instance)
        if not months:
            self.execute(PUBLISH, show=self.show)
            return
        first, last, registered = months  # every month: from the first added to the last
        if self.show:
            _say(f"      indicators for {first} .. {last}, then the release")
        self.execute(
            INDICATORS_AND_RELEASE,
            {RANGE_START: registered[0], RANGE_END: registered[-1]},
            self.show,
        )

    def execute(self, job_name: str, tags: dict | None = None, show: bool = False):
        """Run one job in-process; print its materializations; raise with a one-line reason."""
        # the label the UI files a code location's runs under: runs of cbm run then show in
        # the Overview timeline and each job's run history, beside the runs launched from the UI
        tags = {
            "cbm/pid": str(os.getpid()),
            ".dagster/repository": f"__repository__@{LOCATION_NAME}",
            **(tags or {}),
        }
        result = self.defs.resolve_job_def(job_name).execute_in_process(
            instance=self.instance,
            run_config=QUIET,
            raise_on_error=False,
            tags=tags,
        )
        if not result.success:
            if _interrupted(result):  # Ctrl-C or SIGINT: Dagster stopped the step it ran
                raise KeyboardInterrupt
            raise RuntimeError(f"{job_name} failed: {_failure_reason(result)}")
        if show:
            print_materializations(result)
        return result

    def release_dead_runs(self) -> int:
        """Mark runs that an earlier, killed ``cbm run`` left 'started' as failed, freeing any
        concurrency slots they held. Only runs tagged with a cbm pid that no longer lives.

        Dagster's run monitoring does this for runs its daemon's run launcher started; the
        runs of ``cbm run`` execute in the command's own process, where no daemon watches."""
        import dagster as dg

        stale = 0
        statuses = [dg.DagsterRunStatus.STARTED]
        for run in self.instance.get_runs(filters=dg.RunsFilter(statuses=statuses)):
            pid = run.tags.get("cbm/pid")
            if not pid or _alive(int(pid)):
                continue
            self.instance.report_run_failed(
                run, f"the cbm run process {pid} died (killed?) before the run ended"
            )
            self.instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            stale += 1
        return stale


def indicator_months(settings, instance) -> tuple[str, str, list[str]] | None:
    """The first and last month with verdicts or events (up to the as-of month), and every
    month partition registered, in the order added (``register_months``)."""
    from assets.partitions import register_months
    from warehouse.db import Warehouse, indicator_period_range

    with Warehouse(str(settings.warehouse_path)).connect() as con:
        span = indicator_period_range(con)
    if span is None:
        return None
    return (*span, register_months(instance, *span))


def verified_anything(result) -> bool:
    """Whether a verification run verified: ``release_context`` materializes nothing, and
    verification's steps are skipped, while no report has been accepted (and no as-of time
    is given)."""
    from pipelines.jobs import VERIFICATION

    return any(
        ev.event_specific_data.materialization.asset_key.to_user_string() in VERIFICATION
        for ev in result.get_asset_materialization_events()
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _interrupted(result) -> bool:
    """Whether a run failed because it was interrupted: a step failed with Ctrl-C, or with an
    error it caused (``interrupt_named``)."""
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            err = event.event_specific_data.error
            while err is not None:
                if interrupt_named(err.cls_name, err.message):
                    return True
                err = err.cause
    return False


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


def print_materializations(result, only: list[str] | None = None) -> None:
    rows: dict[str, int] = {}
    for ev in result.get_asset_materialization_events():
        mat = ev.event_specific_data.materialization
        n = mat.metadata.get("dagster/row_count")
        name = mat.asset_key.to_user_string()
        if name not in rows and n is not None and (only is None or name in only):
            rows[name] = n.value
    for name, n in rows.items():
        _say(f"      {name:<22} {n:>9,} rows")
