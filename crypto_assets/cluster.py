"""The cluster deployment's step execution: Celery workers (``dagster-celery``) with RabbitMQ as broker.

``dagster_celery.yaml`` (repository root) is the one Celery configuration: the run's executor is built
from it here, and every worker is started against it with dagster-celery's own CLI::

    DAGSTER_DEPLOYMENT=cluster DAGSTER_HOME=... DAGSTER_PG_URL=... \\
    dagster-celery worker start -A dagster_celery.app -y dagster_celery.yaml -n worker-1 -- --concurrency 2

A worker imports ``crypto_assets.definitions`` to run a step, so it needs the environment every
process of the deployment has (DAGSTER_DEPLOYMENT, CRYPTO_ASSETS_*, DAGSTER_PG_URL). Celery is
imported only here, and this module only for the cluster deployment: the code location of the
other deployments never loads it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg

CELERY_CONFIG_FILE = Path(__file__).resolve().parents[1] / "dagster_celery.yaml"


def executor_config() -> dict:
    """The ``execution: config:`` block of dagster_celery.yaml (what the workers are started with)."""
    from dagster_shared.yaml_utils import load_yaml_from_path

    return load_yaml_from_path(str(CELERY_CONFIG_FILE))["execution"]["config"]


def celery_executor() -> dg.ExecutorDefinition:
    """Steps as Celery tasks; a failed step may be retried (its RetryPolicy, or a write conflict's RetryRequested)."""
    from dagster_celery import celery_executor as executor

    return executor.configured(executor_config(), name="celery")


def worker_command(name: str, concurrency: int = 2, python: str = sys.executable) -> list[str]:
    """dagster-celery's command that starts one worker named ``name`` with ``concurrency`` processes."""
    bin_dir = Path(python).parent
    return [
        str(bin_dir / "dagster-celery"),
        "worker",
        "start",
        "-A",
        "dagster_celery.app",
        "-y",
        str(CELERY_CONFIG_FILE),
        "-n",
        name,
        "--",
        "--concurrency",
        str(concurrency),
        # Prefork: the step runs in a child process, so the worker keeps its broker heartbeat while a long step runs.
        "--pool",
        "prefork",
    ]


def submit_asset_backfill(
    instance: dg.DagsterInstance,
    asset_keys: list[dg.AssetKey],
    first: str,
    last: str,
    tags: dict[str, str] | None = None,
    title: str | None = None,
) -> str:
    """Submit a backfill of the days ``first``..``last`` of each asset, as the UI's "Launch backfill" does.

    Exactly those days of each asset (not the downstream days a lookback mapping reaches). The daemon
    cuts it into runs by the assets' backfill policy, queues and launches them. Returns its id.
    """
    from dagster._core.definitions.selector import (
        PartitionRangeSelector,
        PartitionsByAssetSelector,
        PartitionsSelector,
    )
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id
    from dagster._time import get_current_timestamp

    from crypto_assets.definitions import defs

    days = PartitionsSelector(ranges=[PartitionRangeSelector(start=first, end=last)])
    backfill = PartitionBackfill.from_partitions_by_assets(
        backfill_id=make_new_backfill_id(),
        asset_graph=defs.resolve_asset_graph(),
        backfill_timestamp=get_current_timestamp(),
        tags=tags or {},
        dynamic_partitions_store=instance,
        partitions_by_assets=[PartitionsByAssetSelector(asset_key=key, partitions=days) for key in asset_keys],
        title=title,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def main(argv: list[str] | None = None) -> None:
    """``python -m crypto_assets.cluster backfill --select a,b --from DAY --to DAY``: submit an asset backfill."""
    import argparse

    from crypto_assets.partitions import daily_data_partitions

    parser = argparse.ArgumentParser(description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    backfill = sub.add_parser("backfill", help="submit an asset backfill for the daemon to run")
    backfill.add_argument("--select", required=True, help="comma-separated asset keys")
    backfill.add_argument("--from", dest="first", required=True, help="first day partition, YYYY-MM-DD")
    backfill.add_argument("--to", dest="last", required=True, help="last day partition, YYYY-MM-DD")
    backfill.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    keys = daily_data_partitions.get_partition_keys()
    if args.first not in keys or args.last not in keys or args.first > args.last:
        parser.error(f"--from and --to must be day partitions from {keys[0]} to {keys[-1]}, --from first")
    with dg.DagsterInstance.get() as instance:
        backfill_id = submit_asset_backfill(
            instance, [dg.AssetKey(k) for k in args.select.split(",")], args.first, args.last, title=args.title
        )
    print(backfill_id)


if __name__ == "__main__":
    main()
