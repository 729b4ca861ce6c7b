"""Out-of-time quality of the models against every baseline, and how often the gates would promote.

    python -m benchmarks.model_quality --source synthetic --start 2026-09-01 --days 20 --every 1 --json
    python -m benchmarks.model_quality --source csv --start 2021-01-04 --days 8 --every 7 --evaluation-days 28 --json

Materializes snapshots, features and labels through the real assets into a temporary DuckDB file
(one single-run backfill from ``--history-days`` before the first evaluated day), then for each of
``--days`` split days (``--every`` days apart, the first on ``--start``) materializes the split,
both candidates (walk-forward over the ``--evaluation-days`` ending with the day, then the refit)
and their evaluations, with no champion, so each day is judged on its own. Prints one row per day
and model: the pooled out-of-time PR-AUC of the candidate and of each baseline, the lower bound of
the 90% block-bootstrap interval of each difference, the positives, and whether every gate passed
(would promote). Then the means over days; with ``--json`` one final JSON line.

CSV replay has labeled anomalies injected (the source's seed and rate); with only four coins,
a window of several weeks holds enough of them. ``--anomaly-generator module:function`` swaps the
generator of the injected anomalies (synthetic and CSV alike) for any function with the signature
of ``crypto_assets.market.anomalies.inject_anomalies``, e.g. the holdout generator
``crypto_assets.market.holdout_anomalies:inject_holdout_anomalies``. The anomaly detector's recall
per kind (at its flags, and the z-score's at the same flag rate) is read from its evaluations'
metadata, whichever kinds the generator names.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

from crypto_assets.ml.families import MODEL_FAMILIES  # noqa: E402 - reads no partitions, so safe before the start is set

BASELINES = {f.name: tuple(b.name for b in f.baselines) for f in MODEL_FAMILIES}


def _value(metadata: dict, key: str, default=math.nan):
    entry = metadata.get(key)
    return entry.value if entry is not None else default


def summarize(rows: list[dict]) -> dict:
    """Means over the evaluated days, per model.

    PR-AUC, baselines' PR-AUC, ratios, days ahead, promote share, positives.
    """
    models = {}
    for name, baselines in BASELINES.items():
        mine = [r for r in rows if r["model"] == name and not math.isnan(r["pr_auc"])]
        if not mine:
            continue
        mean = sum(r["pr_auc"] for r in mine) / len(mine)
        summary = {
            "pr_auc": round(mean, 4),
            "days": len(mine),
            "promote_share": round(sum(r["promote"] for r in mine) / len(mine), 3),
            "positives_mean": round(sum(r["positives"] for r in mine) / len(mine), 1),
            "positives_min": min(r["positives"] for r in mine),
            "baselines": {},
        }
        for key in ("brier", "brier_skill", "ece"):
            values = [r[key] for r in mine if key in r and not math.isnan(r[key])]
            if values:
                summary[key] = round(sum(values) / len(values), 4)
        for baseline in baselines:
            other = sum(r[f"{baseline}_pr_auc"] for r in mine) / len(mine)
            summary["baselines"][baseline] = {
                "pr_auc": round(other, 4),
                "ratio": round(mean / other, 3) if other else None,
                "days_ahead": sum(r["pr_auc"] > r[f"{baseline}_pr_auc"] for r in mine),
                "days_credibly_ahead": sum(r[f"{baseline}_ci_low"] > 0 for r in mine),
            }
        models[name] = summary
    return models


def kinds_summary(per_day: list[list[dict]]) -> dict:
    """Recall per kind pooled over the evaluations (weighted by each evaluation's rows of the kind)."""
    pooled: dict[str, dict] = {}
    for records in per_day:
        for r in records:
            p = pooled.setdefault(r["kind"], {"rows": 0, "events": 0, "weighted": {}})
            p["rows"] += r["rows"]
            p["events"] += r["events"]
            for key, value in r.items():
                if key.endswith("recall"):
                    p["weighted"][key] = p["weighted"].get(key, 0.0) + value * r["rows"]
    return {
        kind: {
            "rows": p["rows"],
            "events": p["events"],
            **{k: round(v / p["rows"], 3) for k, v in p["weighted"].items()},
        }
        for kind, p in sorted(pooled.items())
        if p["rows"]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=["synthetic", "csv"], default="synthetic")
    parser.add_argument("--start", default="2026-09-01", help="first evaluated split day (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, default=20, help="how many split days to evaluate")
    parser.add_argument("--every", type=int, default=1, help="days between evaluated split days")
    parser.add_argument(
        "--evaluation-days", type=int, default=7, help="days of each split's walk-forward evaluation window"
    )
    parser.add_argument(
        "--history-days",
        type=int,
        default=None,
        help="days of data before the first split day "
        "(default: the longest train_days, the window and the feature lookback)",
    )
    parser.add_argument("--coins", type=int, default=20, help="synthetic universe size")
    parser.add_argument("--csv-path", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "market"))
    parser.add_argument(
        "--anomaly-generator",
        default="crypto_assets.market.anomalies:inject_anomalies",
        help="module:function injecting the labeled anomalies, with inject_anomalies' signature",
    )
    parser.add_argument(
        "--models",
        default=",".join(BASELINES),
        help="comma-separated model families to evaluate (default: all); fewer is faster",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args(argv)
    if args.days < 1 or args.every < 1:
        parser.error("--days and --every must be at least 1")
    models = [m for m in args.models.split(",") if m]
    if not models or set(models) - set(BASELINES):
        parser.error(f"--models takes some of {', '.join(BASELINES)}")

    first_day = date.fromisoformat(args.start)
    history = args.history_days if args.history_days is not None else 60 + args.evaluation_days + 10
    data_start = first_day - timedelta(days=history)
    # Partitions are defined at import time, so their start must be set before importing the project.
    os.environ["CRYPTO_ASSETS_PARTITIONS_START"] = data_start.isoformat()

    import dagster as dg

    import crypto_assets.definitions  # noqa: F401 - what a run worker loads (Dagster's backfill settings)
    from crypto_assets.assets import candidates, evaluations, features, ingestion, splits
    from crypto_assets.market.sources import CsvReplayMarket, SyntheticMarket
    from crypto_assets.resources import Reports
    from crypto_assets.run_tags import partition_range_tags
    from crypto_assets.warehouse import Warehouse

    days = [first_day + timedelta(days=i * args.every) for i in range(args.days)]
    source = (
        CsvReplayMarket(paths=[args.csv_path], anomaly_generator=args.anomaly_generator)
        if args.source == "csv"
        else SyntheticMarket(universe_size=args.coins, anomaly_generator=args.anomaly_generator)
    )
    database = Path(tempfile.mkdtemp()) / "quality.duckdb"
    resources = {
        "warehouse": Warehouse(database=str(database)),
        "market_source": source,
        "reports": Reports(folder=str(database.parent / "reports")),
    }
    split_config = {"ops": {"training_splits": {"config": {"evaluation_days": args.evaluation_days}}}}
    rows: list[dict] = []
    kinds_per_day: list[list[dict]] = []
    with dg.DagsterInstance.ephemeral() as instance:
        hourly = dg.materialize(
            [ingestion.market_snapshots, features.coin_features, features.coin_labels],
            instance=instance,
            resources=resources,
            raise_on_error=False,
            tags=partition_range_tags(data_start.isoformat(), (days[-1] + timedelta(days=1)).isoformat()),
        )
        if not hourly.success:
            sys.exit("ingestion failed; see the log above")
        for day in days:
            key = day.isoformat()
            # A refused candidate is a decision, not a failure: every evaluation is recorded, which is all we read.
            chosen = [
                a
                for a in [*candidates.candidate_assets, *evaluations.evaluation_assets]
                if any(k.path[-1].startswith(tuple(f"{m}_" for m in models)) for k in a.keys)
            ]
            result = dg.materialize(
                [splits.training_splits, *chosen],
                instance=instance,
                resources=resources,
                partition_key=key,
                raise_on_error=False,
                run_config=split_config,
            )
            for name, baselines in BASELINES.items():
                if name not in models:
                    continue
                found = result.asset_materializations_for_node(f"{name}_evaluation")
                meta = found[0].metadata if found else {}
                row = {
                    "day": key,
                    "model": name,
                    "pr_auc": _value(meta, "candidate_pr_auc"),
                    "positives": int(_value(meta, "evaluation_positives", 0)),
                    "promote": _value(meta, "gates_failed", "missing") == "none",
                    "gates_failed": _value(meta, "gates_failed", "not evaluated"),
                }
                for stat in ("brier", "brier_skill", "ece"):
                    if f"candidate_{stat}" in meta:
                        row[stat] = _value(meta, f"candidate_{stat}")
                for baseline in baselines:
                    row[f"{baseline}_pr_auc"] = _value(meta, f"{baseline}_pr_auc")
                    row[f"{baseline}_ci_low"] = _value(meta, f"vs_{baseline}_ci_low")
                rows.append(row)
                # as each day is evaluated, so a run stopped early still says what it found
                print(f"evaluated {json.dumps(row)}", file=sys.stderr, flush=True)
                if "recall_by_kind_json" in meta:
                    kinds_per_day.append(list(meta["recall_by_kind_json"].value))

    print(
        f"\nsource={args.source}, split days {days[0]} .. {days[-1]} every {args.every} day(s), "
        f"walk-forward window {args.evaluation_days} days, no champion (each day judged on its own)"
    )
    print(
        f"{'day':<12}{'model':<18}{'PR-AUC':>8}  "
        f"{'baselines: PR-AUC (CI low of the difference)':<52}{'positives':>10}  promote"
    )
    for r in rows:
        others = "  ".join(f"{b} {r[f'{b}_pr_auc']:.3f} ({r[f'{b}_ci_low']:+.3f})" for b in BASELINES[r["model"]])
        verdict = "yes" if r["promote"] else f"no: {r['gates_failed']}"
        print(f"{r['day']:<12}{r['model']:<18}{r['pr_auc']:>8.3f}  {others:<52}{r['positives']:>10}  {verdict}")
    summary = summarize(rows)
    for name, s in summary.items():
        ratios = ", ".join(
            f"{b} {v['pr_auc']:.3f} ({v['ratio']}x, ahead {v['days_ahead']}/{s['days']}, "
            f"credibly {v['days_credibly_ahead']})"
            for b, v in s["baselines"].items()
        )
        print(
            f"mean over {s['days']} day(s): {name} PR-AUC {s['pr_auc']:.3f} vs {ratios}; gates promote on "
            f"{s['promote_share']:.0%} of days; positives mean {s['positives_mean']}, min {s['positives_min']}"
            + (
                f"; Brier {s['brier']:.4f}, Brier skill {s['brier_skill']:.3f}, ECE {s['ece']:.4f}"
                if "ece" in s
                else ""
            )
        )
    kinds = kinds_summary(kinds_per_day)
    if kinds:
        print(f"\nanomaly_detector recall per kind ({args.anomaly_generator}), pooled over the evaluations:")
        print(f"{'kind':<28}{'rows':>7}{'events':>8}{'detector':>10}{'zscore':>8}{'events found':>14}")
        for kind, k in kinds.items():
            print(
                f"{kind:<28}{k['rows']:>7}{k['events']:>8}{k.get('candidate_recall', math.nan):>10.3f}"
                f"{k.get('zscore_recall', math.nan):>8.3f}{k.get('candidate_event_recall', math.nan):>14.3f}"
            )
    if args.json:
        print(
            json.dumps(
                {
                    "source": args.source,
                    "start": args.start,
                    "every": args.every,
                    "evaluation_days": args.evaluation_days,
                    "anomaly_generator": args.anomaly_generator,
                    "models": summary,
                    "recall_by_kind": kinds,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
