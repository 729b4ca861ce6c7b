"""Daily splits: the out-of-time window a day's candidates are evaluated on, and the history before it.

For day D the evaluation window is the ``evaluation_days`` days ending with D. Each day of the
window is predicted by a model trained only on the days before it minus the embargo (walk-forward,
``crypto_assets/ml/walk_forward.py``); how many days of history a model trains on is part of its
recipe (``train_days`` in its config). Candidate, baselines and champion are all scored on the
window's rows, so their comparison is paired.
"""

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg
import duckdb
from pydantic import Field

from crypto_assets.feature_spec import FEATURE_SPEC_VERSION, LABEL_HORIZON_HOURS
from crypto_assets.market.schema import utc_naive
from crypto_assets.metadata import markdown_preview
from crypto_assets.partitions import daily_partitions
from crypto_assets.warehouse import Warehouse, insert_frame, query_frame, transaction

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import pandas as pd

SPLITS_KEY = dg.AssetKey("training_splits")
MIN_ROWS_CHECK = "enough_rows"
BALANCE_CHECK = "label_balance"
# Days of hourly inputs a split may read: the longest training history a recipe may ask for
# (VolatilityModelConfig.train_days, at most 120), the evaluation window and the embargo.
SPLIT_LOOKBACK_DAYS = 120 + 31 + 1


class SplitConfig(dg.Config):
    evaluation_days: int = Field(
        default=7,
        ge=1,
        le=31,
        description="Days ending with the split day whose rows candidates, baselines and champion are scored on, each by a model that saw only earlier days.",
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


def evaluation_window(day_start: datetime, config: SplitConfig) -> tuple[datetime, datetime]:
    """[start, end) of the evaluation window of the split day starting at ``day_start`` (naive UTC)."""
    day_start = utc_naive(day_start)
    return day_start - timedelta(days=config.evaluation_days - 1), day_start + timedelta(days=1)


def read_split(conn: duckdb.DuckDBPyConnection, split_id: str) -> dict:
    """The stored split: its window, embargo and excluded coins; a clear error when it was not materialized."""
    row = conn.execute(
        "SELECT evaluation_start, evaluation_end, embargo_hours, excluded_coins, params FROM ml.split_summaries WHERE split_id = ?",
        [split_id],
    ).fetchone()
    if row is None:
        raise dg.Failure(
            description=f"no split {split_id!r} in ml.split_summaries: materialize training_splits for {split_id} first"
        )
    start, end, embargo, excluded, params = row
    return {
        "evaluation_start": start,
        "evaluation_end": end,
        "embargo_hours": int(embargo),
        "excluded_coins": json.loads(excluded or "[]"),
        "params": json.loads(params or "{}"),
    }


def load_rows(
    conn: duckdb.DuckDBPyConnection,
    start: datetime,
    end: datetime,
    *,
    excluded: list[str] = (),
    with_ground_truth: bool = False,
) -> "pd.DataFrame":
    """Features and labels of every coin-hour in [start, end), ordered by hour and coin.

    ``with_ground_truth`` adds ``is_anomaly`` from the injected-anomaly ground truth: for
    evaluation only, never a model input.
    """
    truth = (
        """, EXISTS (SELECT 1 FROM raw.anomaly_ground_truth g
                     WHERE g.coin_id = f.coin_id AND g.partition_hour = f.partition_hour) AS is_anomaly"""
        if with_ground_truth
        else ""
    )
    return query_frame(
        conn,
        f"""
        SELECT f.*, l.fwd_vol_6h, l.vol_threshold, l.volatility_spike, l.fwd_return_6h {truth}
        FROM features.coin_features f
        LEFT JOIN features.coin_labels l USING (coin_id, partition_hour)
        WHERE f.partition_hour >= $start AND f.partition_hour < $end AND NOT list_contains($excluded, f.coin_id)
        ORDER BY f.partition_hour, f.coin_id
        """,
        {"start": utc_naive(start), "end": utc_naive(end), "excluded": list(excluded)},
    )


def refuse_stale_features(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> None:
    """Fail, naming the days to re-materialize, when feature rows in [start, end) come from another feature spec.

    A split mixing two feature definitions would train and evaluate on columns that mean different things.
    """
    stale = conn.execute(
        """
        SELECT strftime(partition_hour, '%Y-%m-%d') AS day, feature_spec_version, count(*) AS feature_rows
        FROM features.coin_features
        WHERE partition_hour >= ? AND partition_hour < ? AND feature_spec_version <> ?
        GROUP BY ALL ORDER BY day
        """,
        [utc_naive(start), utc_naive(end), FEATURE_SPEC_VERSION],
    ).fetchall()
    if stale:
        days = sorted({day for day, _, _ in stale})
        versions = sorted({version for _, version, _ in stale})
        raise dg.Failure(
            description=(
                f"{sum(n for _, _, n in stale)} feature rows on {len(days)} day(s) ({days[0]} .. {days[-1]}) were computed by "
                f"feature spec {', '.join(versions)}, not the current {FEATURE_SPEC_VERSION}: re-materialize coin_features "
                f"for {days[0]}...{days[-1]} (one backfill), then this split."
            ),
            metadata={"stale_days": ", ".join(days)},
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
    start, end = evaluation_window(context.partition_time_window.start, config)
    with warehouse.connect() as conn:
        refuse_stale_features(conn, start, end)
        per_coin = conn.execute(
            """
            SELECT f.coin_id, count(*) AS hours, count(l.volatility_spike) AS labeled,
                   count(*) FILTER (WHERE l.volatility_spike) AS spikes,
                   count(*) FILTER (WHERE g.coin_id IS NOT NULL) AS anomalies
            FROM features.coin_features f
            LEFT JOIN features.coin_labels l USING (coin_id, partition_hour)
            LEFT JOIN (SELECT DISTINCT coin_id, partition_hour FROM raw.anomaly_ground_truth) g USING (coin_id, partition_hour)
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
