"""The rows models train and are evaluated on, and the split that says which.

A :class:`Split` (one per split day, stored in ``ml.split_summaries``) is the evaluation window:
the ``evaluation_days`` days ending with the split day. Its walk-forward folds, for a recipe that
reads ``train_days`` of history, come from :meth:`Split.folds`. ``load_rows`` reads features and
labels (and, for evaluation only, the injected anomalies' ground truth); ``refuse_stale_features``
stops a run before it mixes rows of two feature specs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from crypto_assets.feature_spec import FEATURE_SPEC_VERSION
from crypto_assets.market.schema import utc_naive
from crypto_assets.ml.walk_forward import Fold, plan_folds
from crypto_assets.warehouse import query_frame

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import duckdb
    import pandas as pd

    from crypto_assets.ml.family import ModelFamily
    from crypto_assets.warehouse import Warehouse

MAX_EVALUATION_DAYS = 31


@dataclass(frozen=True)
class Split:
    """A stored split: its evaluation window [start, end) (naive UTC), embargo and excluded coins."""

    split_id: str
    evaluation_start: datetime
    evaluation_end: datetime
    embargo_hours: int
    excluded_coins: list[str]
    params: dict

    @property
    def evaluation_days(self) -> int:
        return (self.evaluation_end - self.evaluation_start).days

    def folds(self, train_days: int) -> list[Fold]:
        """The walk-forward folds of the window for a recipe reading ``train_days`` of history, then the refit."""
        return plan_folds(
            self.evaluation_end - timedelta(days=1),
            evaluation_days=self.evaluation_days,
            train_days=train_days,
            embargo_hours=self.embargo_hours,
        )

    @classmethod
    def read(cls, conn: duckdb.DuckDBPyConnection, split_id: str) -> Split:
        """The stored split; a clear error when it was not materialized."""
        row = conn.execute(
            "SELECT evaluation_start, evaluation_end, embargo_hours, excluded_coins, params "
            "FROM ml.split_summaries WHERE split_id = ?",
            [split_id],
        ).fetchone()
        if row is None:
            raise dg.Failure(
                description=(
                    f"no split {split_id!r} in ml.split_summaries: materialize training_splits for {split_id} first"
                )
            )
        start, end, embargo, excluded, params = row
        return cls(split_id, start, end, int(embargo), json.loads(excluded or "[]"), json.loads(params or "{}"))


def evaluation_window(day_start: datetime, evaluation_days: int) -> tuple[datetime, datetime]:
    """[start, end) of the evaluation window of the split day starting at ``day_start`` (naive UTC)."""
    day_start = utc_naive(day_start)
    return day_start - timedelta(days=evaluation_days - 1), day_start + timedelta(days=1)


def load_rows(
    conn: duckdb.DuckDBPyConnection,
    start: datetime,
    end: datetime,
    *,
    excluded: list[str] = (),
    with_ground_truth: bool = False,
) -> pd.DataFrame:
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


def load_anomaly_kinds(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pd.DataFrame:
    """The injected events of every anomalous coin-hour in [start, end): coin_id, partition_hour, kind, event.

    For evaluation only (recall per kind). A coin-hour labeled by two events keeps the first by id.
    """
    return query_frame(
        conn,
        """
        SELECT coin_id, partition_hour, arg_min(anomaly_kind, anomaly_id) AS anomaly_kind, min(anomaly_id) AS anomaly_id
        FROM raw.anomaly_ground_truth WHERE partition_hour >= $start AND partition_hour < $end
        GROUP BY coin_id, partition_hour
        """,
        {"start": utc_naive(start), "end": utc_naive(end)},
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
                f"{sum(n for _, _, n in stale)} feature rows on {len(days)} day(s) ({days[0]} .. {days[-1]}) were "
                f"computed by feature spec {', '.join(versions)}, not the current {FEATURE_SPEC_VERSION}: "
                f"re-materialize coin_features for {days[0]}...{days[-1]} (one backfill), then this split."
            ),
            metadata={"stale_days": ", ".join(days)},
        )


def load_split_frame(
    warehouse: Warehouse, family: ModelFamily, split_id: str, train_days: int
) -> tuple[Split, list[Fold], pd.DataFrame]:
    """The split, its folds for a recipe of ``train_days``, and every row they read (the connection is released)."""
    with warehouse.connect() as conn:
        split = Split.read(conn, split_id)
        folds = split.folds(train_days)
        earliest = min(f.train_start for f in folds)
        refuse_stale_features(conn, earliest, split.evaluation_end)
        frame = load_rows(
            conn,
            earliest,
            split.evaluation_end,
            excluded=split.excluded_coins,
            with_ground_truth=family.needs_ground_truth,
        )
    return split, folds, frame
