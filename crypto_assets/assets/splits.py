"""Daily splits: the out-of-time window a day's candidates are evaluated on, and the history before it.

For day D the evaluation window is the ``evaluation_days`` days ending with D. Each day of the
window is predicted by a model trained only on the days before it minus the embargo (walk-forward,
``crypto_assets/ml/walk_forward.py``); how many days of history a model trains on is part of its
recipe (``train_days`` in its config). Candidate, baselines and champion are all scored on the
window's rows, so their comparison is paired.
"""

import json
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from crypto_assets.feature_spec import LABEL_HORIZON_HOURS
from crypto_assets.market.schema import utc_naive
from crypto_assets.metadata import markdown_preview
from crypto_assets.ml.families import MODEL_FAMILIES
from crypto_assets.partitions import daily_partitions
from crypto_assets.training_data import MAX_EVALUATION_DAYS, evaluation_window, refuse_stale_features
from crypto_assets.warehouse import Warehouse, insert_frame, transaction

SPLITS_KEY = dg.AssetKey("training_splits")
MIN_ROWS_CHECK = "enough_rows"
BALANCE_CHECK = "label_balance"
# Days of hourly inputs a split may read: the longest training history any recipe may ask for, the
# evaluation window and the embargo.
SPLIT_LOOKBACK_DAYS = max(f.max_train_days for f in MODEL_FAMILIES) + MAX_EVALUATION_DAYS + 1


class SplitConfig(dg.Config):
    evaluation_days: int = Field(
        default=7,
        ge=1,
        le=MAX_EVALUATION_DAYS,
        description=(
            "Days ending with the split day whose rows candidates, baselines and champion are scored on, "
            "each by a model that saw only earlier days."
        ),
    )
    embargo_hours: int = Field(
        default=LABEL_HORIZON_HOURS,
        ge=LABEL_HORIZON_HOURS,
        description="Gap between a fold's training rows and the day it predicts; at least the label horizon.",
    )
    min_coin_hours: int = Field(
        default=24, ge=1, description="Coins with fewer hours in the evaluation window are excluded from the split."
    )
    min_evaluation_rows: int = Field(
        default=24, ge=1, description="The split fails its check below this many evaluation rows."
    )


@dg.asset(
    key=SPLITS_KEY,
    deps=[
        dg.AssetDep(
            key,
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-SPLIT_LOOKBACK_DAYS, end_offset=0, allow_nonexistent_upstream_partitions=True
            ),
        )
        for key in ("coin_features", "coin_labels")
    ],
    partitions_def=daily_partitions,
    pool="duckdb_writer",
    group_name="training",
    kinds={"duckdb", "python"},
    owners=["team:ml-platform"],
    metadata={"dagster/table_name": "ml.split_summaries"},
    check_specs=[
        dg.AssetCheckSpec(
            MIN_ROWS_CHECK, asset=SPLITS_KEY, blocking=True, description="Enough rows in the evaluation window."
        ),
        dg.AssetCheckSpec(
            BALANCE_CHECK, asset=SPLITS_KEY, description="The window holds volatility spikes and calm hours."
        ),
    ],
)
def training_splits(context: dg.AssetExecutionContext, config: SplitConfig, warehouse: Warehouse):
    """The day's split: the window of days candidates, baselines and champion are evaluated on, out of time.

    Coins with too few hours in the window are excluded and listed. The split id is the day.
    """
    import pandas as pd

    split_id = context.partition_key
    start, end = evaluation_window(context.partition_time_window.start, config.evaluation_days)
    with warehouse.connect() as conn:
        refuse_stale_features(conn, start, end)
        per_coin = conn.execute(
            """
            SELECT f.coin_id, count(*) AS hours, count(l.volatility_spike) AS labeled,
                   count(*) FILTER (WHERE l.volatility_spike) AS spikes,
                   count(*) FILTER (WHERE g.coin_id IS NOT NULL) AS anomalies
            FROM features.coin_features f
            LEFT JOIN features.coin_labels l USING (coin_id, partition_hour)
            LEFT JOIN (SELECT DISTINCT coin_id, partition_hour FROM raw.anomaly_ground_truth) g
                USING (coin_id, partition_hour)
            WHERE f.partition_hour >= ? AND f.partition_hour < ?
            GROUP BY f.coin_id ORDER BY f.coin_id
            """,
            [start, end],
        ).df()
        excluded = sorted(per_coin.loc[per_coin["hours"] < config.min_coin_hours, "coin_id"])
        kept = per_coin[~per_coin["coin_id"].isin(excluded)]
        labeled = int(kept["labeled"].sum())
        summary = {
            "split_id": split_id,
            "split_day": context.partition_time_window.start.date(),
            "evaluation_start": start,
            "evaluation_end": end,
            "embargo_hours": config.embargo_hours,
            "params": json.dumps(config.model_dump(), sort_keys=True),
            "evaluation_rows": int(kept["hours"].sum()),
            "labeled_rows": labeled,
            "spike_rate": float(kept["spikes"].sum() / labeled) if labeled else None,
            "anomaly_rows": int(kept["anomalies"].sum()),
            "coins": len(kept),
            "excluded_coins": json.dumps(excluded),
            "created_at": utc_naive(datetime.now(UTC)),
        }
        with transaction(conn):
            conn.execute("DELETE FROM ml.split_summaries WHERE split_id = ?", [split_id])
            insert_frame(conn, "ml.split_summaries", pd.DataFrame([summary]))

    spike_rate = summary["spike_rate"]
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": summary["evaluation_rows"],
            "evaluation_window": f"{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC ({config.evaluation_days} days)",
            "evaluation_rows": summary["evaluation_rows"],
            "labeled_rows": labeled,
            "spike_rate": spike_rate if spike_rate is not None else float("nan"),
            "anomaly_rows": summary["anomaly_rows"],
            "coins": summary["coins"],
            "excluded_coins": ", ".join(excluded) or "none",
            "per_coin": markdown_preview(per_coin, limit=50),
            "params": dg.MetadataValue.json(config.model_dump()),
        },
        check_results=[
            dg.AssetCheckResult(
                asset_key=SPLITS_KEY,
                check_name=MIN_ROWS_CHECK,
                passed=summary["evaluation_rows"] >= config.min_evaluation_rows,
                metadata={
                    "evaluation_rows": summary["evaluation_rows"],
                    "min_evaluation_rows": config.min_evaluation_rows,
                },
            ),
            dg.AssetCheckResult(
                asset_key=SPLITS_KEY,
                check_name=BALANCE_CHECK,
                severity=dg.AssetCheckSeverity.WARN,
                passed=spike_rate is not None and 0 < spike_rate < 1,
                metadata={
                    "spike_rate": spike_rate if spike_rate is not None else float("nan"),
                    "labeled_rows": labeled,
                },
            ),
        ],
    )
