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
from crypto_assets.metadata import add_partition_metadata, column_schema, markdown_preview, partition_days, table
from crypto_assets.partitions import DAY, daily_data_partitions, data_backfill_policy, observed_window
from crypto_assets.warehouse import Warehouse, replace_window_with_query, transaction

FEATURES_KEY = dg.AssetKey("coin_features")
LABELS_KEY = dg.AssetKey("coin_labels")

SNAPSHOTS_PRESENT_CHECK = "snapshots_present"
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
            SNAPSHOTS_PRESENT_CHECK,
            asset=FEATURES_KEY,
            blocking=True,
            description="Every day of the run whose hours have ended has market snapshots.",
        ),
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
        days = partition_days(context)
        per_day = conn.execute(
            f"""
            WITH f AS (
                SELECT {DAY} AS day, count(*) AS feature_rows, count(DISTINCT coin_id) AS coins,
                       count(*) FILTER (WHERE in_warmup) AS rows_in_warmup,
                       count(*) FILTER (WHERE missing_hours_24h > 0) AS rows_after_gaps,
                       {", ".join(f"count(*) FILTER (WHERE NOT isfinite({name})) AS {name}" for name in FEATURE_NAMES)}
                FROM features.coin_features WHERE partition_hour >= $start AND partition_hour < $end GROUP BY day
            ),
            s AS (
                SELECT {DAY} AS day, count(*) AS snapshot_rows FROM raw.market_snapshots
                WHERE partition_hour >= $start AND partition_hour < $end GROUP BY day
            )
            SELECT day, coalesce(s.snapshot_rows, 0) AS snapshot_rows, f.* EXCLUDE (day)
            FROM f FULL JOIN s USING (day)
            """,
            {"start": start, "end": end},
        ).df()
        preview = conn.execute(
            f"""
            SELECT {DAY} AS day, symbol, partition_hour, ret_1h, rv_24h, rsi_14, macd_hist, bb_pct_b,
                   volume_zscore_24h, in_warmup
            FROM features.coin_features WHERE partition_hour >= $start AND partition_hour < $end
            QUALIFY partition_hour = max(partition_hour) OVER (PARTITION BY {DAY})
            ORDER BY day, symbol
            """,
            {"start": start, "end": end},
        ).df()
        table_columns = set(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'features' AND table_name = 'coin_features'"
            ).fetchall()
        )
    per_day = per_day.fillna(0).set_index("day").reindex([key for key, _, _ in days], fill_value=0)
    previews = {day: rows.drop(columns="day") for day, rows in preview.groupby("day")}
    add_partition_metadata(
        context,
        FEATURES_KEY,
        {
            key: {
                "dagster/row_count": int(row["feature_rows"]),
                "coins": int(row["coins"]),
                "rows_in_warmup": int(row["rows_in_warmup"]),
                "rows_after_gaps": int(row["rows_after_gaps"]),
                "preview": markdown_preview(previews[key], limit=20)
                if key in previews
                else dg.MetadataValue.md("_no rows_"),
            }
            for key, row in per_day.iterrows()
        },
    )
    expected_columns = {(name, duck_type) for name, duck_type, _ in feature_table_columns()}
    infinite = {name: int(per_day[name].sum()) for name in FEATURE_NAMES if per_day[name].sum() > 0}
    mismatched = per_day[per_day["feature_rows"] != per_day["snapshot_rows"]]
    yield dg.MaterializeResult(
        metadata={
            "feature_spec_version": FEATURE_SPEC_VERSION,
            "run/partitions": len(days),
            "run/rows": int(per_day["feature_rows"].sum()),
        },
        check_results=[
            snapshots_present(FEATURES_KEY, days, per_day["snapshot_rows"]),
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
                passed=mismatched.empty,
                description=(
                    f"feature rows differ from snapshot rows on {len(mismatched)} of {len(per_day)} day(s): "
                    + ", ".join(mismatched.index[:10])
                    if len(mismatched)
                    else f"one feature row per snapshot row on each of the {len(per_day)} day(s)"
                ),
                metadata={
                    "feature_rows": int(per_day["feature_rows"].sum()),
                    "snapshot_rows": int(per_day["snapshot_rows"].sum()),
                    **(
                        {"days": table(mismatched[["feature_rows", "snapshot_rows"]].reset_index())}
                        if len(mismatched)
                        else {}
                    ),
                },
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


def snapshots_present(asset_key: dg.AssetKey, days: list, snapshot_rows) -> dg.AssetCheckResult:
    """Fails, naming them, on days whose hours have ended but have no snapshot rows: never a green 0-row partition."""
    missing = []
    for key, start, end in days:
        ended = observed_window(dg.TimeWindow(start, end))
        if ended[1] > ended[0] and int(snapshot_rows.get(key, 0)) == 0:
            missing.append(key)
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=SNAPSHOTS_PRESENT_CHECK,
        passed=not missing,
        description=(
            f"no market_snapshots on {len(missing)} day(s) whose hours have ended: {', '.join(missing[:10])}"
            f"{' …' if len(missing) > 10 else ''}; materialize market_snapshots for them first"
            if missing
            else f"snapshots present on every day whose hours have ended ({len(days)} day(s))"
        ),
        metadata={"days_without_snapshots": len(missing), "days": len(days)},
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
            SNAPSHOTS_PRESENT_CHECK,
            asset=LABELS_KEY,
            blocking=True,
            description="Every day of the run whose hours have ended has market snapshots.",
        ),
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
        days = partition_days(context)
        per_day = conn.execute(
            f"""
            WITH l AS (
                SELECT {DAY} AS day, count(*) AS labels, count(volatility_spike) AS labeled,
                       avg(volatility_spike::DOUBLE) AS spike_rate
                FROM features.coin_labels WHERE partition_hour >= $start AND partition_hour < $end GROUP BY day
            ),
            s AS (
                SELECT {DAY} AS day, count(*) AS snapshot_rows FROM raw.market_snapshots
                WHERE partition_hour >= $start AND partition_hour < $end GROUP BY day
            )
            SELECT day, coalesce(s.snapshot_rows, 0) AS snapshot_rows, coalesce(l.labels, 0) AS labels,
                   coalesce(l.labeled, 0) AS labeled, l.spike_rate
            FROM l FULL JOIN s USING (day)
            """,
            {"start": start, "end": end},
        ).df()
        feature_columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'features' AND table_name = 'coin_features'"
            ).fetchall()
        }
    per_day = per_day.set_index("day").reindex([key for key, _, _ in days])
    per_day[["snapshot_rows", "labels", "labeled"]] = per_day[["snapshot_rows", "labels", "labeled"]].fillna(0)
    add_partition_metadata(
        context,
        LABELS_KEY,
        {
            key: {
                "dagster/row_count": int(row["labels"]),
                "labeled_rows": int(row["labeled"]),
                # Hours whose 6-hour horizon is not observed yet: re-materialized by the hourly labels job.
                "unlabeled_rows": int(row["labels"] - row["labeled"]),
                # NaN, not 0, when nothing is labeled yet: no spike rate to speak of.
                "spike_rate": float(row["spike_rate"]) if row["labeled"] else float("nan"),
            }
            for key, row in per_day.iterrows()
        },
    )
    label_only = {name for name, _, _ in LABEL_COLUMNS} - {"coin_id", "partition_hour"}
    yield dg.MaterializeResult(
        metadata={
            "horizon_hours": LABEL_HORIZON_HOURS,
            "run/partitions": len(days),
            "run/rows": int(per_day["labels"].sum()),
        },
        check_results=[
            snapshots_present(LABELS_KEY, days, per_day["snapshot_rows"]),
            dg.AssetCheckResult(
                check_name=LABELS_NO_LEAK_CHECK,
                passed=not (feature_columns & label_only),
                metadata={"leaked_columns": ", ".join(sorted(feature_columns & label_only)) or "none"},
            ),
        ],
    )
