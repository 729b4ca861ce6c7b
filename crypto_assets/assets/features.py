"""Features and labels: hourly tables computed in DuckDB SQL from the snapshots, partitioned by day.

Features read the snapshots of the partition plus LOOKBACK_HOURS before it; labels read 6 hours
past the partition and stay NULL where those hours are not ingested yet. Both are written straight
from the SQL into their table (INSERT ... SELECT): no round trip through pandas.
"""

from datetime import datetime, timedelta

import dagster as dg

from crypto_assets.feature_spec import (
    FEATURE_NAMES,
    FEATURE_SPEC_VERSION,
    FEATURES_SQL,
    LABEL_COLUMNS,
    LABEL_HORIZON_HOURS,
    LABELS_SQL,
    LONGEST_WINDOW_HOURS,
    LOOKBACK_HOURS,
    feature_table_columns,
)
from crypto_assets.market.schema import utc_naive
from crypto_assets.metadata import column_schema, markdown_preview
from crypto_assets.partitions import daily_data_partitions, data_backfill_policy
from crypto_assets.warehouse import Warehouse, replace_window_with_query, transaction

FEATURES_KEY = dg.AssetKey("coin_features")
LABELS_KEY = dg.AssetKey("coin_labels")

FEATURES_SCHEMA_CHECK = "feature_columns_match_spec"
FEATURES_COMPLETE_CHECK = "one_row_per_snapshot"
FEATURES_FINITE_CHECK = "no_infinite_features"
LABELS_NO_LEAK_CHECK = "labels_not_in_features"

HOURS_PER_DAY = 24
FEATURE_CHUNK_DAYS = 60  # a year-long backfill peaks at ~2.3 GB computed whole (benchmarks/backfill.py)


def days_covering(hours: int) -> int:
    """Whole days of partitions that hold ``hours`` hours before a day's first hour."""
    return -(-hours // HOURS_PER_DAY)


def time_pieces(start: datetime, end: datetime, step: timedelta) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into consecutive pieces of at most ``step``."""
    pieces = []
    while start < end:
        pieces.append((start, min(start + step, end)))
        start += step
    return pieces


@dg.asset(
    key=FEATURES_KEY,
    deps=[
        dg.AssetDep(
            "market_snapshots",
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-days_covering(LOOKBACK_HOURS), end_offset=0),
        )
    ],
    partitions_def=daily_data_partitions,
    backfill_policy=data_backfill_policy,
    pool="duckdb_writer",
    group_name="features",
    kinds={"duckdb", "sql"},
    owners=["team:ml-platform"],
    metadata={
        "dagster/column_schema": column_schema(feature_table_columns()),
        "dagster/table_name": "features.coin_features",
        "feature_spec_version": FEATURE_SPEC_VERSION,
    },
    check_specs=[
        dg.AssetCheckSpec(
            FEATURES_SCHEMA_CHECK,
            asset=FEATURES_KEY,
            blocking=True,
            description="The table's columns are exactly the feature spec's.",
        ),
        dg.AssetCheckSpec(
            FEATURES_COMPLETE_CHECK,
            asset=FEATURES_KEY,
            blocking=True,
            description="Exactly one feature row per snapshot row.",
        ),
        dg.AssetCheckSpec(
            FEATURES_FINITE_CHECK,
            asset=FEATURES_KEY,
            blocking=True,
            description="No feature is +inf, -inf or NaN (NULL is allowed: models impute it).",
        ),
    ],
)
def coin_features(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Hourly technical, volume and cross-sectional features per coin, computed with DuckDB window functions.

    Rows in a window's warm-up or after gaps are kept and flagged (in_warmup, missing_hours_24h).
    """
    window = context.partition_time_window
    start, end = utc_naive(window.start), utc_naive(window.end)
    # A long backfill computes FEATURE_CHUNK_DAYS at a time: an hour's features depend only on the
    # LOOKBACK_HOURS before it, so the rows are the same, and DuckDB's window state stays bounded.
    pieces = [
        {
            "read_start": piece_start - timedelta(hours=LOOKBACK_HOURS),
            "start": piece_start,
            "end": piece_end,
            "feature_spec_version": FEATURE_SPEC_VERSION,
        }
        for piece_start, piece_end in time_pieces(start, end, timedelta(days=FEATURE_CHUNK_DAYS))
    ]
    with warehouse.connect() as conn:
        with transaction(conn):
            replace_window_with_query(
                conn,
                "features.coin_features",
                f"SELECT *, $feature_spec_version AS feature_spec_version FROM ({FEATURES_SQL})",
                pieces,
                column="partition_hour",
                start=start,
                end=end,
            )
        stats = (
            conn.execute(
                f"""
            SELECT count(*) AS feature_rows, count(DISTINCT coin_id) AS coins,
                   count(*) FILTER (WHERE in_warmup) AS rows_in_warmup,
                   count(*) FILTER (WHERE missing_hours_24h > 0) AS rows_after_gaps,
                   (SELECT count(*) FROM raw.market_snapshots WHERE partition_hour >= $start AND partition_hour < $end) AS snapshot_rows,
                   {", ".join(f"count(*) FILTER (WHERE NOT isfinite({name})) AS {name}" for name in FEATURE_NAMES)}
            FROM features.coin_features WHERE partition_hour >= $start AND partition_hour < $end
            """,
                {"start": start, "end": end},
            )
            .df()
            .iloc[0]
        )
        preview = conn.execute(
            """
            SELECT symbol, partition_hour, ret_1h, rv_24h, rsi_14, macd_hist, bb_pct_b, volume_zscore_24h, in_warmup
            FROM features.coin_features
            WHERE partition_hour = (SELECT max(partition_hour) FROM features.coin_features WHERE partition_hour >= $start AND partition_hour < $end)
            ORDER BY symbol
            """,
            {"start": start, "end": end},
        ).df()
        table_columns = set(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'features' AND table_name = 'coin_features'"
            ).fetchall()
        )
    expected_columns = {(name, duck_type) for name, duck_type, _ in feature_table_columns()}
    infinite = {name: int(stats[name]) for name in FEATURE_NAMES if stats[name] > 0}
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": int(stats["feature_rows"]),
            "feature_spec_version": FEATURE_SPEC_VERSION,
            "coins": int(stats["coins"]),
            "rows_in_warmup": int(stats["rows_in_warmup"]),
            "rows_after_gaps": int(stats["rows_after_gaps"]),
            "preview": markdown_preview(preview, limit=20),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=FEATURES_SCHEMA_CHECK,
                passed=table_columns == expected_columns,
                metadata={
                    "unexpected_or_missing": ", ".join(f"{n} {t}" for n, t in sorted(table_columns ^ expected_columns))
                    or "none"
                },
            ),
            dg.AssetCheckResult(
                check_name=FEATURES_COMPLETE_CHECK,
                passed=bool(stats["feature_rows"] == stats["snapshot_rows"]),
                metadata={"feature_rows": int(stats["feature_rows"]), "snapshot_rows": int(stats["snapshot_rows"])},
            ),
            dg.AssetCheckResult(
                check_name=FEATURES_FINITE_CHECK,
                passed=not infinite,
                metadata={
                    "non_finite_values": sum(infinite.values()),
                    "by_feature": ", ".join(f"{k}: {v}" for k, v in infinite.items()) or "none",
                },
            ),
        ],
    )


@dg.asset(
    key=LABELS_KEY,
    deps=[
        dg.AssetDep(
            "market_snapshots",
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-days_covering(LONGEST_WINDOW_HOURS + LABEL_HORIZON_HOURS),
                end_offset=days_covering(LABEL_HORIZON_HOURS),
                allow_nonexistent_upstream_partitions=True,
            ),
        )
    ],
    partitions_def=daily_data_partitions,
    backfill_policy=data_backfill_policy,
    pool="duckdb_writer",
    group_name="features",
    kinds={"duckdb", "sql"},
    owners=["team:ml-platform"],
    metadata={"dagster/column_schema": column_schema(LABEL_COLUMNS), "dagster/table_name": "features.coin_labels"},
    check_specs=[
        dg.AssetCheckSpec(
            LABELS_NO_LEAK_CHECK,
            asset=LABELS_KEY,
            blocking=True,
            description="No label column appears in the feature table.",
        ),
    ],
)
def coin_labels(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Forward-looking labels per coin and hour: 6h forward volatility, volatility spikes and direction.

    The spike threshold uses only the past; hours whose 6-hour horizon is not observed yet stay NULL.
    Re-materialize a partition after its horizon has passed to fill them.
    """
    window = context.partition_time_window
    start, end = utc_naive(window.start), utc_naive(window.end)
    horizon = timedelta(hours=LABEL_HORIZON_HOURS)
    params = {
        "read_start": start - timedelta(hours=LONGEST_WINDOW_HOURS) - horizon,
        "read_end": end + horizon,
        "start": start,
        "end": end,
    }
    with warehouse.connect() as conn:
        with transaction(conn):
            replace_window_with_query(
                conn, "features.coin_labels", LABELS_SQL, params, column="partition_hour", start=start, end=end
            )
        counts = conn.execute(
            """
            SELECT count(*) AS labels, count(volatility_spike) AS labeled, avg(volatility_spike::DOUBLE) AS spike_rate
            FROM features.coin_labels WHERE partition_hour >= ? AND partition_hour < ?
            """,
            [start, end],
        ).fetchone()
        feature_columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'features' AND table_name = 'coin_features'"
            ).fetchall()
        }
    label_only = {name for name, _, _ in LABEL_COLUMNS} - {"coin_id", "partition_hour"}
    rows, labeled, spike_rate = counts
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": int(rows),
            "labeled_rows": int(labeled),
            "unlabeled_rows": int(rows - labeled),
            "spike_rate": float(spike_rate) if spike_rate is not None else 0.0,
            "horizon_hours": LABEL_HORIZON_HOURS,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=LABELS_NO_LEAK_CHECK,
                passed=not (feature_columns & label_only),
                metadata={"leaked_columns": ", ".join(sorted(feature_columns & label_only)) or "none"},
            )
        ],
    )
