"""A single-run backfill through Dagster: snapshots -> features -> labels, timed per stage.

    python -m benchmarks.backfill --days 365 --coins 100 --instance sqlite
    python -m benchmarks.backfill --days 30 --coins 100 --instance postgres --json
    python -m benchmarks.backfill --days 365 --coins 20 --warehouse lake --json

Materializes ``--days`` daily partitions of ``market_snapshots`` (with ``market_quarantine`` and
``anomaly_ground_truth``), ``coin_features`` and ``coin_labels`` for a synthetic market of
``--coins`` coins, as one run (the tags a backfill from the UI sets), on a fresh Dagster instance
configured by the repo's own ``dagster.yaml`` (SQLite, in a temporary DAGSTER_HOME) or
``dagster.prod.yaml`` (a fresh PostgreSQL database at DAGSTER_PG_URL, dropped afterwards), and a
fresh DuckDB file (``--warehouse lake``: a fresh DuckLake, its catalog a throwaway PostgreSQL
database, its Parquet files in the temporary folder; the JSON then also has the lake's bytes per
snapshot row). Prints, per stage, the step's wall time split into the asset's own work (step
start to its first materialization event) and Dagster's bookkeeping (storing one materialization
event per partition), then the run's wall time, the events it wrote and the process's peak RSS.
With ``--json`` the last line is one JSON object (wall_s, events, peak_rss_mb, days, coins,
instance, stages).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

START = date(2025, 1, 1)
STAGES = ("market_snapshots", "coin_features", "coin_labels")


def _stage_times(instance, run_id: str) -> dict[str, dict[str, float]]:
    """Per step: wall, the asset's own work (until its first materialization) and the rest (bookkeeping)."""
    starts, first_materialization, ends = {}, {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        kind = event.event_type_value
        if kind == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif kind == "ASSET_MATERIALIZATION":
            first_materialization.setdefault(event.step_key, entry.timestamp)
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            ends[event.step_key] = entry.timestamp
    out = {}
    for step, began in starts.items():
        wall = ends.get(step, began) - began
        work = first_materialization.get(step, ends.get(step, began)) - began
        out[step] = {"wall_s": round(wall, 2), "work_s": round(work, 2), "bookkeeping_s": round(wall - work, 2)}
    return out


def _lake_sizes(warehouse) -> dict:
    """Parquet bytes per row of the snapshot and feature tables, and the live file count."""
    out = {}
    with warehouse.connect() as conn:
        for schema, table in (("raw", "market_snapshots"), ("features", "coin_features")):
            files, size = conn.execute(
                "SELECT count(*), sum(data_file_size_bytes) FROM ducklake_list_files('lake', ?, schema => ?)",
                [table, schema],
            ).fetchone()
            rows = conn.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
            out[table] = {
                "files": files,
                "bytes": int(size or 0),
                "bytes_per_row": round((size or 0) / max(rows, 1), 1),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--coins", type=int, default=100)
    parser.add_argument("--instance", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--warehouse", choices=["file", "lake"], default="file")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args(argv)
    if args.days < 1 or args.coins < 1:
        parser.error("--days and --coins must be at least 1")
    # Partitions are defined at import time: their start must be set before importing the project.
    os.environ["CRYPTO_ASSETS_PARTITIONS_START"] = START.isoformat()

    import dagster as dg

    import crypto_assets.definitions  # noqa: F401 - what a run worker loads: it sets the event batch size
    from crypto_assets import instance as instance_setup
    from crypto_assets.assets import features, ingestion
    from crypto_assets.market.sources import SyntheticMarket
    from crypto_assets.run_tags import partition_range_tags
    from crypto_assets.warehouse import Warehouse

    folder = Path(tempfile.mkdtemp(prefix="backfill-"))
    deployment = "local" if args.instance == "sqlite" else "prod"
    database_url = None
    if deployment == "prod":
        base = instance_setup.postgres_url()
        database_url = base.rsplit("/", 1)[0] + f"/backfill_{uuid.uuid4().hex[:12]}"
        os.environ[instance_setup.PG_URL_ENV] = database_url
    try:
        home = instance_setup.prepare_home(folder / "dagster_home", deployment)
    except instance_setup.InstanceSetupError as exc:
        sys.exit(f"backfill: {exc}")

    last = START + timedelta(days=args.days - 1)
    lake_url = None
    if args.warehouse == "lake":
        from crypto_assets.lake import LakeWarehouse

        lake_url = instance_setup.postgres_url().rsplit("/", 1)[0] + f"/backfill_lake_{uuid.uuid4().hex[:12]}"
        instance_setup.ensure_database(lake_url)
        warehouse = LakeWarehouse(
            catalog=lake_url.replace("postgresql+psycopg2://", "postgresql://", 1), data_path=str(folder / "lake")
        )
    else:
        warehouse = Warehouse(database=str(folder / "warehouse.duckdb"))
    resources = {
        "warehouse": warehouse,
        "market_source": SyntheticMarket(universe_size=args.coins),
    }
    with dg.DagsterInstance.from_config(str(home)) as instance:
        began = time.perf_counter()
        result = dg.materialize(
            [ingestion.market_snapshots, features.coin_features, features.coin_labels],
            instance=instance,
            resources=resources,
            raise_on_error=False,
            tags=partition_range_tags(START.isoformat(), last.isoformat()),
        )
        wall = time.perf_counter() - began
        events = len(instance.all_logs(result.run_id))
        stages = _stage_times(instance, result.run_id)
    if database_url:
        instance_setup.drop_database(database_url)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = resources["warehouse"].query("SELECT count(*) AS n FROM features.coin_features")["n"].iloc[0]
    lake = None
    if lake_url:
        lake = _lake_sizes(warehouse)
        instance_setup.drop_database(lake_url)

    print(
        f"\nsingle-run backfill: {args.days} days x {args.coins} coins from {START}, synthetic market, "
        f"instance {args.instance}, warehouse {args.warehouse}, {rows:,} feature rows, "
        f"run {'succeeded' if result.success else 'FAILED'}"
    )
    print(f"{'stage':<20}{'wall s':>9}{'work s':>9}{'bookkeeping s':>15}")
    for stage in STAGES:
        s = stages.get(stage, {"wall_s": float("nan"), "work_s": float("nan"), "bookkeeping_s": float("nan")})
        print(f"{stage:<20}{s['wall_s']:>9.2f}{s['work_s']:>9.2f}{s['bookkeeping_s']:>15.2f}")
    print(f"{'run (total)':<20}{wall:>9.2f}")
    print(f"events written: {events:,}   peak RSS: {peak_rss_mb:,.0f} MB")
    if lake:
        print(f"lake: {lake}")
    if args.json:
        print(
            json.dumps(
                {
                    "wall_s": round(wall, 2),
                    "events": events,
                    "peak_rss_mb": round(peak_rss_mb, 1),
                    "days": args.days,
                    "coins": args.coins,
                    "instance": args.instance,
                    "warehouse": args.warehouse,
                    "lake": lake,
                    "success": result.success,
                    "stages": stages,
                }
            )
        )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
