"""Holdout quality of the models against their baselines, on the synthetic market or replayed files.

    python -m benchmarks.model_quality --source synthetic --start 2026-02-01 --days 4 --holdout-hours 168 --every 7
    python -m benchmarks.model_quality --source csv --start 2021-03-01 --days 4 --holdout-hours 168 --every 7

Materializes snapshots, features and labels through the real assets into a temporary DuckDB file,
then for ``--days`` split days (``--every`` days apart, after enough history for the first split)
builds the split with ``--holdout-hours`` of holdout, trains both candidates and evaluates them
(no champion, so each split is judged on its own). With 1% anomalies and only four coins in the
replayed files, a one-day holdout rarely contains one: use a week. Prints PR-AUC per
day for the detector vs its z-score baseline and the volatility model vs persistence, and the
mean over days. CSV replay gets labeled anomalies injected (seed 7, 1% of coin-hours).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=["synthetic", "csv"], default="synthetic")
    parser.add_argument("--start", default="2026-02-01", help="first day of ingested data (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, default=7, help="how many split days to evaluate")
    parser.add_argument("--every", type=int, default=1, help="days between evaluated split days")
    parser.add_argument("--holdout-hours", type=int, default=24, help="holdout length of each split")
    parser.add_argument("--csv-path", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "market"))
    args = parser.parse_args(argv)
    # Partitions are defined at import time, so their start must be set before importing the project.
    os.environ["CRYPTO_ASSETS_PARTITIONS_START"] = args.start

    import dagster as dg

    from crypto_assets.assets import features, ingestion, models, splits
    from crypto_assets.resources import CsvMarketConfig, MarketSource
    from crypto_assets.warehouse import Warehouse

    first_day = date.fromisoformat(args.start)
    # The first split needs its holdout, the embargo and 14 days of training history.
    lead_days = 15 + -(-args.holdout_hours // 24)
    eval_days = [first_day + timedelta(days=lead_days + i * args.every) for i in range(args.days)]
    split_config = {"ops": {"training_splits": {"config": {"holdout_hours": args.holdout_hours}}}}
    source = MarketSource(kind="csv", csv=CsvMarketConfig(paths=[args.csv_path])) if args.source == "csv" else MarketSource()
    database = Path(tempfile.mkdtemp()) / "quality.duckdb"
    resources = {"warehouse": Warehouse(database=str(database)), "market_source": source}
    rows: list[tuple[str, str, float, float, int]] = []
    with dg.DagsterInstance.ephemeral() as instance:
        hourly = dg.materialize(
            [ingestion.market_snapshots, features.coin_features, features.coin_labels],
            instance=instance,
            resources=resources,
            raise_on_error=False,
            tags={
                "dagster/asset_partition_range_start": f"{first_day:%Y-%m-%d}-00:00",
                "dagster/asset_partition_range_end": f"{eval_days[-1]:%Y-%m-%d}-23:00",
            },
        )
        if not hourly.success:
            sys.exit("ingestion failed; see the log above")
        for day in eval_days:
            key = f"{day:%Y-%m-%d}"
            # Blocking gates may fail a run; the evaluation is still recorded, which is all we read.
            result = dg.materialize(
                [splits.training_splits, *models.candidate_assets, *models.evaluation_assets],
                instance=instance, resources=resources, partition_key=key, raise_on_error=False, run_config=split_config,
            )
            for name in ("anomaly_detector", "volatility_model"):
                found = result.asset_materializations_for_node(f"{name}_evaluation")
                meta = found[0].metadata if found else {}
                rows.append((
                    key, name,
                    meta["candidate_pr_auc"].value if "candidate_pr_auc" in meta else math.nan,
                    meta["baseline_pr_auc"].value if "baseline_pr_auc" in meta else math.nan,
                    meta["holdout_positives"].value if "holdout_positives" in meta else 0,
                ))

    print(f"\nsource={args.source}, split days {eval_days[0]} .. {eval_days[-1]} every {args.every} day(s), holdout {args.holdout_hours}h")
    print(f"{'day':<12}{'model':<18}{'model PR-AUC':>14}{'baseline PR-AUC':>17}{'positives':>11}")
    for day, name, model_auc, base_auc, positives in rows:
        print(f"{day:<12}{name:<18}{model_auc:>14.4f}{base_auc:>17.4f}{positives:>11}")
    for name, baseline in (("anomaly_detector", "z-score baseline"), ("volatility_model", "persistence")):
        scored = [r for r in rows if r[1] == name and not math.isnan(r[2]) and not math.isnan(r[3])]
        if scored:
            model_mean = sum(r[2] for r in scored) / len(scored)
            base_mean = sum(r[3] for r in scored) / len(scored)
            ahead = sum(r[2] > r[3] for r in scored)
            print(f"mean over {len(scored)} day(s): {name} PR-AUC {model_mean:.4f} vs {baseline} {base_mean:.4f} "
                  f"(model ahead on {ahead}/{len(scored)} days)")


if __name__ == "__main__":
    main()
