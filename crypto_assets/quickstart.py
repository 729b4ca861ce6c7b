"""Materialize a recent window of partitions through every asset, as runs the Dagster UI shows.

``python -m crypto_assets.quickstart [--days N]`` runs against the instance in ``DAGSTER_HOME``.
Runs are created the way the webserver and the daemon create them, from the code location that
``workspace.yaml`` names (so each shows on its job's page and in the Overview), and executed in
this process one after another; each job runs once over its whole range (a single-run backfill).
The promotion sensor's runs are requested by the sensor itself and tagged as the daemon tags them.

The split day is the day before yesterday, so that yesterday is a whole day the champions never
saw: its forecasts are out-of-time evidence with outcomes, at any hour of the day.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from crypto_assets.run_tags import RUN_KEY_TAG, SENSOR_NAME_TAG, partition_range_tags
from crypto_assets.settings import DAY_FMT, PARTITIONS_START_ENV, PARTITIONS_START_FILE

DEFAULT_DAYS = 70
CODE_LOCATION = "crypto_assets.definitions"  # workspace.yaml's python_module: the location name the UI uses
LAUNCHED_BY_TAG = "crypto_assets/launched_by"
PROMOTION_SENSOR = "champion_promotion_sensor"


def split_day(now: datetime | None = None) -> str:
    """The day the quickstart trains on: the day before yesterday (yesterday is then out of time for its models)."""
    now = now or datetime.now(UTC)
    return (now - timedelta(days=2)).strftime(DAY_FMT)


def recent_days(days: int, now: datetime | None = None) -> tuple[str, str]:
    """First and last daily partition keys: the ``days`` complete days before today, and today so far."""
    from crypto_assets.partitions import daily_data_partitions

    if days < 1:
        raise ValueError(f"--days must be at least 1, got {days}")
    now = now or datetime.now(UTC)
    first = max(now - timedelta(days=days), daily_data_partitions.start)
    return first.strftime(DAY_FMT), now.strftime(DAY_FMT)


def remember_partitions_start(days: int, now: datetime | None = None) -> None:
    """Make the partitions begin where the quickstart's data begins (unless CRYPTO_ASSETS_PARTITIONS_START says).

    The first day is kept in ``.local/partitions_start``, which every process of the project reads
    (crypto_assets/settings.py): the UI's partition bar then shows the days that hold data, not
    months before them. A later, longer quickstart moves it earlier; it never moves later.
    """
    import os

    if os.environ.get(PARTITIONS_START_ENV):
        return
    first = ((now or datetime.now(UTC)) - timedelta(days=days)).strftime(DAY_FMT)
    remembered = PARTITIONS_START_FILE.read_text().strip() if PARTITIONS_START_FILE.is_file() else None
    if remembered is None or first < remembered:
        PARTITIONS_START_FILE.parent.mkdir(parents=True, exist_ok=True)
        PARTITIONS_START_FILE.write_text(first + "\n")


class Launcher:
    """Creates runs from the code location's own job origins and executes them here, one at a time."""

    def __init__(self, instance: dg.DagsterInstance):
        import sys

        from dagster._core.remote_origin import InProcessCodeLocationOrigin
        from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

        from crypto_assets.instance import PROJECT_ROOT

        self.instance = instance
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(
                executable_path=sys.executable, module_name=CODE_LOCATION, working_directory=str(PROJECT_ROOT)
            ),
            location_name=CODE_LOCATION,
        )
        self.location = origin.create_location(instance)
        self.repository = self.location.get_repository("__repository__")
        self.seconds: dict[str, float] = {}

    def run(
        self,
        job_name: str,
        label: str,
        *,
        tags: dict,
        run_config: dict | None = None,
        assets: list[dg.AssetKey] | None = None,
    ) -> dg.DagsterRun:
        """Create and execute one run of ``job_name`` (only ``assets`` of it, when given: a subset run of the job)."""
        from dagster._core.execution.api import execute_run
        from dagster._utils.hosted_user_process import recon_job_from_origin

        started = time.monotonic()
        remote_job = self.repository.get_full_job(job_name)
        if assets is not None:
            from dagster._core.definitions.selector import JobSubsetSelector

            remote_job = self.location.get_job(
                JobSubsetSelector(
                    location_name=CODE_LOCATION,
                    repository_name=self.repository.name,
                    job_name=job_name,
                    op_selection=None,
                    asset_selection=assets,
                )
            )
        run_config = run_config or {}
        from crypto_assets.config_validation import RunConfigError, check_run_config

        try:  # the ranges Dagster does not check at launch, before a run exists (the steps check again)
            check_run_config(run_config, job_name)
        except RunConfigError as exc:
            raise SystemExit(f"quickstart: {exc}") from None
        plan = self.location.get_execution_plan(
            remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=self.instance
        )
        run = self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=run_config,
            resolved_op_selection=None,
            step_keys_to_execute=None,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**remote_job.tags, **tags},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=frozenset(assets) if assets is not None else None,
            asset_check_selection=None,
            asset_graph=self.repository.asset_graph,
        )
        result = execute_run(recon_job_from_origin(run.job_code_origin), run, self.instance)
        seconds = time.monotonic() - started
        self.seconds[f"{job_name} {label}"] = seconds
        status = "succeeded" if result.success else "FAILED"
        print(f"{job_name} {label}: {status} in {seconds:.1f}s (run {run.run_id})", flush=True)
        if not result.success:
            raise SystemExit(f"{job_name} failed; open the run {run.run_id} in the Dagster UI for details")
        return run

    def run_range(self, job_name: str, first: str, last: str, assets: list[dg.AssetKey] | None = None) -> dg.DagsterRun:
        tags = {LAUNCHED_BY_TAG: "quickstart", **partition_range_tags(first, last)}
        return self.run(job_name, f"{first}...{last}", tags=tags, assets=assets)

    def run_promotion_sensor(self) -> None:
        """One tick of the promotion sensor, its run requests launched as the daemon launches them."""
        from crypto_assets.definitions import defs

        sensor = defs.resolve_sensor_def(PROMOTION_SENSOR)
        tick = sensor.evaluate_tick(
            dg.build_sensor_context(instance=self.instance, repository_def=defs.get_repository_def())
        )
        for request in tick.run_requests:
            tags = {**request.tags, SENSOR_NAME_TAG: PROMOTION_SENSOR, RUN_KEY_TAG: request.run_key}
            self.run(
                request.job_name, request.tags.get("crypto_assets/model", ""), tags=tags, run_config=request.run_config
            )


def populate(instance: dg.DagsterInstance, days: int, now: datetime | None = None) -> dict[str, float]:
    """The quickstart's runs, as of ``now`` (default: the clock): ingest, label, train, promote, score.

    Returns the seconds each run took.
    """
    now = now or datetime.now(UTC)
    first_day, today = recent_days(days, now)
    day = split_day(now)
    launcher = Launcher(instance)
    from crypto_assets.assets.features import FEATURES_KEY, LABELS_KEY
    from crypto_assets.assets.ingestion import GROUND_TRUTH, QUARANTINE, SNAPSHOTS

    # 1. snapshots and features, then labels, for the whole window: the history models train on.
    #    Only the jobs' data assets: scores and outcomes come once the champions are decided (step 4),
    #    for the days after the split day, so a second quickstart scores exactly what the first did.
    launcher.run_range(
        "hourly_ingest_and_score_job", first_day, today, [SNAPSHOTS, QUARANTINE, GROUND_TRUTH, FEATURES_KEY]
    )
    launcher.run_range("hourly_labels_job", first_day, today, [LABELS_KEY])
    # 2. the split day's split, candidates, evaluations and drift. A refused candidate is a decision,
    #    not a failure: the run succeeds and its gates show as failed checks.
    launcher.run("daily_training_job", day, tags={LAUNCHED_BY_TAG: "quickstart", "dagster/partition": day})
    # 3. what the promotion sensor does on its next tick: promote, refuse, or install a baseline champion.
    launcher.run_promotion_sensor()
    # 4. score the days after the split day with the champions (and the latest candidates in shadow), and
    #    join the forecasts with their outcomes.
    after = (datetime.strptime(day, DAY_FMT) + timedelta(days=1)).strftime(DAY_FMT)
    launcher.run_range("hourly_ingest_and_score_job", after, today)
    launcher.run_range("hourly_labels_job", after, today)
    return launcher.seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_DAYS,
        help=f"how many complete days before today to materialize (default {DEFAULT_DAYS}: the volatility model's "
        "60 days of training history before the 7 evaluated days that end with the split day)",
    )
    parser.add_argument(
        "--as-of",
        type=datetime.fromisoformat,
        default=None,
        help="replay as if it were this UTC time (benchmarks/quickstart_dates.py); default: now",
    )
    args = parser.parse_args(argv)
    as_of = args.as_of and (args.as_of if args.as_of.tzinfo else args.as_of.replace(tzinfo=UTC))

    remember_partitions_start(args.days, as_of)  # before anything imports the partitions
    started = time.monotonic()
    populate(dg.DagsterInstance.get(), args.days, now=as_of)
    print(f"quickstart materializations done in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
