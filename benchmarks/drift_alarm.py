"""Does the drift alarm stay quiet on a stable market and fire on a regime shift?

    python -m benchmarks.drift_alarm --json
    python -m benchmarks.drift_alarm --start 2026-10-01 --stable-days 20 --shift-coins 5 --shift-multiplier 2 --json
    python -m benchmarks.drift_alarm --source csv --start 2021-03-01 --stable-days 30 --json   # a month of real files

Two synthetic markets of ``--coins`` coins, identical until the shift: a stable one, and one where
from midnight of the day after the stable days, the first ``--shift-coins`` coins become
``--shift-multiplier`` times as volatile. ``feature_drift`` (the real asset, with its default
config) runs for each of the ``--stable-days`` days on the stable market, and for the days from
the shift on the shifted one. Prints one row per day (drift share, drifted features, alarm) and
with ``--json`` one final line: stable_days, false_alarm_days, shift_detected_after_days (1: the
alarm fires on the shift's first day; null: not within ``--shift-days``). Each day also shows the
two rules apart: the dataset-level one (Evidently) and the per-coin CUSUM (which coins, the
largest statistic), so the share of alarms each raises is visible.

``--source csv`` replays the shared real files (``--csv-path``) without injected anomalies, for
``--stable-days`` days from ``--start``: how often the alarm fires on a real month (there is no
shift to detect, so no shifted run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", default="2026-10-01", help="first stable day evaluated (YYYY-MM-DD)")
    parser.add_argument("--stable-days", type=int, default=20)
    parser.add_argument("--shift-days", type=int, default=3, help="days evaluated from the shift on")
    parser.add_argument("--shift-coins", type=int, default=5)
    parser.add_argument("--shift-multiplier", type=float, default=2.0)
    parser.add_argument("--coins", type=int, default=20)
    parser.add_argument("--source", choices=["synthetic", "csv"], default="synthetic")
    parser.add_argument("--csv-path", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "market"))
    parser.add_argument("--seed", type=int, default=7, help="synthetic market seed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    first = date.fromisoformat(args.start)
    shift_day = first + timedelta(days=args.stable_days)
    data_start = first - timedelta(days=30)  # the reference window and the features' warm-up
    os.environ["CRYPTO_ASSETS_PARTITIONS_START"] = data_start.isoformat()
    os.environ.setdefault("CRYPTO_ASSETS_REPORTS_DIR", tempfile.mkdtemp(prefix="drift-reports-"))

    import dagster as dg

    import crypto_assets.definitions  # noqa: F401 - what a run worker loads (Dagster's backfill settings)
    from crypto_assets.assets import drift, features, ingestion
    from crypto_assets.market.sources import CsvReplayMarket, SyntheticMarket
    from crypto_assets.resources import build_resources
    from crypto_assets.run_tags import partition_range_tags
    from crypto_assets.warehouse import Warehouse

    def run(market, days: list[date]) -> list[dict]:
        resources = {
            "warehouse": Warehouse(database=str(Path(tempfile.mkdtemp()) / "drift.duckdb")),
            "market_source": market,
            "reports": build_resources()["reports"],
        }
        rows = []
        with dg.DagsterInstance.ephemeral() as instance:
            ingested = dg.materialize(
                [ingestion.market_snapshots, features.coin_features],
                instance=instance,
                resources=resources,
                tags=partition_range_tags(data_start.isoformat(), days[-1].isoformat()),
                raise_on_error=False,
            )
            if not ingested.success:
                sys.exit("ingestion failed; see the log above")
            for day in days:
                result = dg.materialize(
                    [drift.feature_drift], instance=instance, resources=resources, partition_key=day.isoformat()
                )
                meta = result.asset_materializations_for_node("feature_drift")[0].metadata
                rows.append(
                    {
                        "day": day.isoformat(),
                        "drift_share": meta[drift.DRIFT_SHARE_METADATA_KEY].value,
                        "drifted": meta["drifted_features"].value,
                        "features": meta["features_compared"].value,
                        "alarm": meta[drift.DRIFT_DETECTED_METADATA_KEY].value,
                        "dataset_alarm": meta["dataset_drift_detected"].value,
                        "coin_alarm": meta["coin_drift_detected"].value,
                        "coins_drifted": meta["coins_drifted"].value,
                        "max_coin_cusum": meta["max_coin_cusum"].value,
                    }
                )
        return rows

    stable_days = [first + timedelta(days=i) for i in range(args.stable_days)]
    if args.source == "csv":
        stable = run(CsvReplayMarket(paths=[args.csv_path], inject_anomalies=False), stable_days)
        shifted = []
        print(
            f"\nfeature_drift, default DriftConfig, real files {args.csv_path}, {stable_days[0]} .. {stable_days[-1]}"
        )
    else:
        stable = run(SyntheticMarket(universe_size=args.coins, seed=args.seed), stable_days)
        shifted_market = SyntheticMarket(
            universe_size=args.coins,
            seed=args.seed,
            regime_shift_at=f"{shift_day.isoformat()}T00:00",
            regime_shift_coins=args.shift_coins,
            regime_shift_multiplier=args.shift_multiplier,
        )
        shifted = run(shifted_market, [shift_day + timedelta(days=i) for i in range(args.shift_days)])
        print(
            f"\nfeature_drift, default DriftConfig, {args.coins} synthetic coins (seed {args.seed}); shift from "
            f"{shift_day} 00:00 UTC: {args.shift_coins} coins x{args.shift_multiplier:g} volatility"
        )
    print(
        f"{'market':<10}{'day':<12}{'drift share':>12}{'drifted':>9}{'dataset':>9}{'coins':>7}{'max CUSUM':>11}"
        f"{'alarm':>7}  coins drifted"
    )
    for market, rows in (("stable", stable), ("shifted", shifted)):
        for r in rows:
            print(
                f"{market:<10}{r['day']:<12}{r['drift_share']:>12.3f}"
                f"{r['drifted']:>5}/{r['features']:<3}{'YES' if r['dataset_alarm'] else '-':>9}"
                f"{'YES' if r['coin_alarm'] else '-':>7}{r['max_coin_cusum']:>11.3f}"
                f"{'YES' if r['alarm'] else '-':>7}  {r['coins_drifted']}"
            )
    false_alarms = sum(r["alarm"] for r in stable)
    detected_after = next((i + 1 for i, r in enumerate(shifted) if r["alarm"]), None)
    dataset_alarms = sum(r["dataset_alarm"] for r in stable)
    coin_alarms = sum(r["coin_alarm"] for r in stable)
    print(f"stable: dataset-level rule alone {dataset_alarms} day(s), per-coin rule alone {coin_alarms} day(s)")
    print(
        f"stable market: alarm on {false_alarms} of {len(stable)} days; shift detected "
        + (f"on day {detected_after} after it began" if detected_after else f"not within {len(shifted)} days")
    )
    if args.json:
        print(
            json.dumps(
                {
                    "source": args.source,
                    "stable_days": len(stable),
                    "false_alarm_days": false_alarms,
                    "dataset_rule_alarm_days": dataset_alarms,
                    "coin_rule_alarm_days": coin_alarms,
                    "shift_detected_by_coin_rule_after_days": next(
                        (i + 1 for i, r in enumerate(shifted) if r["coin_alarm"]), None
                    ),
                    "shift_detected_after_days": detected_after,
                    "stable": stable,
                    "shifted": shifted,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
