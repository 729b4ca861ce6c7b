"""Daily train/holdout splits over the hourly features and labels.

For day D: holdout = the last ``holdout_hours`` before D ends; train = the ``max_history_hours``
before the holdout, minus an embargo at its end of at least the label horizon, so no training
label looks into the holdout.
"""

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pandas as pd
from pydantic import Field, model_validator

from crypto_assets.feature_spec import LABEL_HORIZON_HOURS
from crypto_assets.market.schema import utc_naive
from crypto_assets.metadata import markdown_preview
from crypto_assets.partitions import daily_partitions
from crypto_assets.warehouse import Warehouse, insert_frame, transaction

SPLITS_KEY = dg.AssetKey("training_splits")
NO_OVERLAP_CHECK = "train_holdout_disjoint"
EMBARGO_CHECK = "embargo_holds"
MIN_ROWS_CHECK = "enough_rows"
BALANCE_CHECK = "label_balance"
# Days of hourly inputs a split reads by default: 14 days of history, the embargo and the holdout day.
SPLIT_LOOKBACK_DAYS = 15


class SplitConfig(dg.Config):
    holdout_hours: int = Field(default=24, ge=1, le=24 * 7, description="Hours at the end of the day held out for evaluation.")
    max_history_hours: int = Field(default=14 * 24, ge=24, le=24 * 366, description="Hours of training history before the embargo.")
    embargo_hours: int = Field(default=LABEL_HORIZON_HOURS, ge=0, description="Gap between train and holdout; at least the label horizon.")
    min_snapshots_per_coin: int = Field(default=3, ge=1, description="Coins with fewer rows in train or holdout are excluded.")
    min_train_rows: int = Field(default=200, ge=1, description="The split fails its check below this many train rows.")
    min_holdout_rows: int = Field(default=24, ge=1, description="The split fails its check below this many holdout rows.")

    @model_validator(mode="after")
    def _consistent(self):
        if self.embargo_hours < LABEL_HORIZON_HOURS:
            raise ValueError(
                f"embargo_hours ({self.embargo_hours}) must be at least the label horizon ({LABEL_HORIZON_HOURS}h), "
                "or training labels would look into the holdout"
            )
        if self.holdout_hours > self.max_history_hours:
            raise ValueError(f"holdout_hours ({self.holdout_hours}) is longer than max_history_hours ({self.max_history_hours})")
        return self


def split_bounds(day_end: datetime, config: SplitConfig) -> dict[str, datetime]:
    holdout_start = day_end - timedelta(hours=config.holdout_hours)
    train_end = holdout_start - timedelta(hours=config.embargo_hours)
    return {
        "train_start": train_end - timedelta(hours=config.max_history_hours),
        "train_end": train_end,
        "holdout_start": holdout_start,
        "holdout_end": day_end,
    }


def load_split(conn: duckdb.DuckDBPyConnection, split_id: str, part: str, *, with_ground_truth: bool = False) -> pd.DataFrame:
    """Features and labels of one part ('train' or 'holdout') of a split, ordered by hour and coin.

    ``with_ground_truth`` adds ``is_anomaly`` from the injected-anomaly ground truth: for
    evaluation only, never for training.
    """
    if part not in ("train", "holdout"):
        raise ValueError(f"part must be 'train' or 'holdout', got {part!r}")
    truth = (
        """, EXISTS (SELECT 1 FROM raw.anomaly_ground_truth g
                     WHERE g.coin_id = f.coin_id AND g.partition_hour = f.partition_hour) AS is_anomaly"""
        if with_ground_truth
        else ""
    )
    return conn.execute(
        f"""
        SELECT f.*, l.fwd_vol_6h, l.vol_threshold, l.volatility_spike, l.fwd_return_6h {truth}
        FROM ml.training_splits s
        JOIN features.coin_features f USING (coin_id, partition_hour)
        LEFT JOIN features.coin_labels l USING (coin_id, partition_hour)
        WHERE s.split_id = ? AND s.part = ?
        ORDER BY f.partition_hour, f.coin_id
        """,
        [split_id, part],
    ).df()


@dg.asset(
    key=SPLITS_KEY,
    deps=[
        dg.AssetDep(key, partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-SPLIT_LOOKBACK_DAYS, end_offset=0))
        for key in ("coin_features", "coin_labels")
    ],
    partitions_def=daily_partitions,
    pool="duckdb_writer",
    group_name="training",
    kinds={"duckdb", "python"},
    owners=["team:ml-platform"],
    metadata={"dagster/table_name": "ml.training_splits"},
    check_specs=[
        dg.AssetCheckSpec(NO_OVERLAP_CHECK, asset=SPLITS_KEY, blocking=True, description="Train and holdout share no hour."),
        dg.AssetCheckSpec(EMBARGO_CHECK, asset=SPLITS_KEY, blocking=True, description="At least the embargo separates the last train hour from the holdout."),
        dg.AssetCheckSpec(MIN_ROWS_CHECK, asset=SPLITS_KEY, blocking=True, description="Enough rows in train and holdout."),
        dg.AssetCheckSpec(BALANCE_CHECK, asset=SPLITS_KEY, description="Both parts contain volatility spikes and calm hours."),
    ],
)
def training_splits(context: dg.AssetExecutionContext, config: SplitConfig, warehouse: Warehouse):
    """Daily train/holdout split of coin-hours, with an embargo so no training label sees the holdout.

    Coins with too few rows are excluded and listed. The split id is the day.
    """
    split_id = context.partition_key
    day_end = context.partition_time_window.end
    bounds = split_bounds(day_end, config)
    with warehouse.connect() as conn:
        rows = conn.execute(
            """
            SELECT f.coin_id, f.partition_hour,
                   CASE WHEN f.partition_hour >= $holdout_start THEN 'holdout' ELSE 'train' END AS part,
                   l.volatility_spike
            FROM features.coin_features f
            LEFT JOIN features.coin_labels l USING (coin_id, partition_hour)
            WHERE (f.partition_hour >= $train_start AND f.partition_hour < $train_end)
               OR (f.partition_hour >= $holdout_start AND f.partition_hour < $holdout_end)
            """,
            {k: utc_naive(v) for k, v in bounds.items()},
        ).df()
        counts = rows.groupby(["coin_id", "part"]).size().unstack(fill_value=0).reindex(columns=["train", "holdout"], fill_value=0)
        excluded = sorted(counts.index[(counts["train"] < config.min_snapshots_per_coin) | (counts["holdout"] < config.min_snapshots_per_coin)])
        kept = rows[~rows["coin_id"].isin(excluded)]
        split_rows = kept[["coin_id", "partition_hour", "part"]].assign(split_id=split_id)
        summary = _summary(split_id, context.partition_time_window.start, bounds, config, kept, excluded)
        with transaction(conn):
            conn.execute("DELETE FROM ml.training_splits WHERE split_id = ?", [split_id])
            conn.execute("DELETE FROM ml.split_summaries WHERE split_id = ?", [split_id])
            insert_frame(conn, "ml.training_splits", split_rows)
            insert_frame(conn, "ml.split_summaries", pd.DataFrame([summary]))
        checks = split_checks(conn, split_id, config)

    train, holdout = kept[kept["part"] == "train"], kept[kept["part"] == "holdout"]
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(kept),
            "train_rows": len(train),
            "holdout_rows": len(holdout),
            "train_window": f"{bounds['train_start']:%Y-%m-%d %H:%M} .. {bounds['train_end']:%Y-%m-%d %H:%M} UTC",
            "holdout_window": f"{bounds['holdout_start']:%Y-%m-%d %H:%M} .. {bounds['holdout_end']:%Y-%m-%d %H:%M} UTC",
            "coins": int(kept["coin_id"].nunique()),
            "excluded_coins": ", ".join(excluded) or "none",
            "train_spike_rate": summary["train_spike_rate"] if summary["train_spike_rate"] is not None else -1.0,
            "holdout_spike_rate": summary["holdout_spike_rate"] if summary["holdout_spike_rate"] is not None else -1.0,
            "params": dg.MetadataValue.json(config.model_dump()),
        },
        check_results=checks,
    )


def _spike_rate(frame: pd.DataFrame) -> float | None:
    labeled = frame["volatility_spike"].dropna()
    return float(labeled.astype(float).mean()) if len(labeled) else None


def _summary(split_id, day_start, bounds, config, kept, excluded) -> dict:
    train, holdout = kept[kept["part"] == "train"], kept[kept["part"] == "holdout"]
    return {
        "split_id": split_id,
        "split_day": day_start.date(),
        **{k: utc_naive(v) for k, v in bounds.items()},
        "params": json.dumps(config.model_dump(), sort_keys=True),
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "excluded_coins": json.dumps(excluded),
        "train_spike_rate": _spike_rate(train),
        "holdout_spike_rate": _spike_rate(holdout),
        "created_at": utc_naive(datetime.now(timezone.utc)),
    }


def split_checks(conn: duckdb.DuckDBPyConnection, split_id: str, config: SplitConfig) -> list[dg.AssetCheckResult]:
    """The split's invariants, read back from what was stored."""
    stats = conn.execute(
        """
        SELECT
            max(partition_hour) FILTER (WHERE part = 'train') AS last_train,
            min(partition_hour) FILTER (WHERE part = 'holdout') AS first_holdout,
            count(*) FILTER (WHERE part = 'train') AS train_rows,
            count(*) FILTER (WHERE part = 'holdout') AS holdout_rows
        FROM ml.training_splits WHERE split_id = ?
        """,
        [split_id],
    ).fetchone()
    last_train, first_holdout, train_rows, holdout_rows = stats
    overlap = conn.execute(
        """
        SELECT count(*) FROM ml.training_splits t JOIN ml.training_splits h
          ON t.split_id = h.split_id AND t.coin_id = h.coin_id AND t.partition_hour = h.partition_hour
        WHERE t.split_id = ? AND t.part = 'train' AND h.part = 'holdout'
        """,
        [split_id],
    ).fetchone()[0]
    time_overlap = last_train is not None and first_holdout is not None and last_train >= first_holdout
    # The embargo is the gap between the end of the last train hour and the first holdout hour.
    gap_hours = None if last_train is None or first_holdout is None else (first_holdout - last_train).total_seconds() / 3600 - 1
    balance = conn.execute(
        """
        SELECT s.part, avg(l.volatility_spike::DOUBLE) AS spike_rate, count(l.volatility_spike) AS labeled
        FROM ml.training_splits s LEFT JOIN features.coin_labels l USING (coin_id, partition_hour)
        WHERE s.split_id = ? GROUP BY s.part
        """,
        [split_id],
    ).df().set_index("part")
    train_rate = balance["spike_rate"].get("train")
    return [
        dg.AssetCheckResult(
            asset_key=SPLITS_KEY, check_name=NO_OVERLAP_CHECK, passed=bool(overlap == 0 and not time_overlap),
            metadata={"shared_rows": int(overlap), "last_train_hour": str(last_train), "first_holdout_hour": str(first_holdout)},
        ),
        dg.AssetCheckResult(
            asset_key=SPLITS_KEY, check_name=EMBARGO_CHECK, passed=bool(gap_hours is not None and gap_hours >= config.embargo_hours),
            metadata={"gap_hours": gap_hours if gap_hours is not None else -1.0, "embargo_hours": config.embargo_hours},
        ),
        dg.AssetCheckResult(
            asset_key=SPLITS_KEY, check_name=MIN_ROWS_CHECK,
            passed=bool(train_rows >= config.min_train_rows and holdout_rows >= config.min_holdout_rows),
            metadata={"train_rows": int(train_rows), "holdout_rows": int(holdout_rows),
                      "min_train_rows": config.min_train_rows, "min_holdout_rows": config.min_holdout_rows},
        ),
        dg.AssetCheckResult(
            asset_key=SPLITS_KEY, check_name=BALANCE_CHECK,
            passed=bool(train_rate is not None and not pd.isna(train_rate) and 0 < train_rate < 1),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"balance": markdown_preview(balance.reset_index())},
        ),
    ]
