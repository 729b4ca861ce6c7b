"""Features and labels: hourly tables computed in DuckDB SQL from the snapshots.

Features read the snapshots of the partition plus LOOKBACK_HOURS before it; labels read 6 hours
past the partition and stay NULL where those hours are not ingested yet.
"""

from datetime import timedelta

import dagster as dg

from crypto_assets.feature_spec import (
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
from crypto_assets.partitions import hourly_partitions
from crypto_assets.warehouse import Warehouse, replace_window, transaction

FEATURES_KEY = dg.AssetKey("coin_features")
LABELS_KEY = dg.AssetKey("coin_labels")

FEATURES_SCHEMA_CHECK = "feature_columns_match_spec"
FEATURES_COMPLETE_CHECK = "one_row_per_snapshot"
LABELS_NO_LEAK_CHECK = "labels_not_in_features"


@dg.asset(
    key=FEATURES_KEY,
    deps=[
        dg.AssetDep(
            "market_snapshots",
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-LOOKBACK_HOURS, end_offset=0),
        )
    ],
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
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
        dg.AssetCheckSpec(FEATURES_SCHEMA_CHECK, asset=FEATURES_KEY, blocking=True, description="The table's columns are exactly the feature spec's."),
        dg.AssetCheckSpec(FEATURES_COMPLETE_CHECK, asset=FEATURES_KEY, blocking=True, description="Exactly one feature row per snapshot row."),
    ],
)
def coin_features(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Hourly technical, volume and cross-sectional features per coin, computed with DuckDB window functions.

    Rows in a window's warm-up or after gaps are kept and flagged (in_warmup, missing_hours_24h).
    """
    window = context.partition_time_window
    params = {
        "read_start": utc_naive(window.start - timedelta(hours=LOOKBACK_HOURS)),
        "start": utc_naive(window.start),
        "end": utc_naive(window.end),
    }
    with warehouse.connect() as conn:
        features = conn.execute(FEATURES_SQL, params).df().assign(feature_spec_version=FEATURE_SPEC_VERSION)
        with transaction(conn):
            replace_window(conn, "features.coin_features", features, column="partition_hour", start=window.start, end=window.end)
        snapshots = conn.execute(
            "SELECT count(*) FROM raw.market_snapshots WHERE partition_hour >= ? AND partition_hour < ?",
            [params["start"], params["end"]],
        ).fetchone()[0]
        table_columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'features' AND table_name = 'coin_features' ORDER BY ordinal_position"
        ).fetchall()]
    expected_columns = [name for name, _, _ in feature_table_columns()]
    warmup = int(features["in_warmup"].sum())
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(features),
            "feature_spec_version": FEATURE_SPEC_VERSION,
            "coins": int(features["coin_id"].nunique()),
            "rows_in_warmup": warmup,
            "rows_after_gaps": int((features["missing_hours_24h"] > 0).sum()),
            "preview": markdown_preview(
                features[features["partition_hour"] == features["partition_hour"].max()][
                    ["symbol", "ret_1h", "rv_24h", "rsi_14", "macd_hist", "bb_pct_b", "volume_zscore_24h", "in_warmup"]
                ],
                limit=20,
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=FEATURES_SCHEMA_CHECK,
                passed=table_columns == expected_columns,
                metadata={"unexpected_or_missing": ", ".join(sorted(set(table_columns) ^ set(expected_columns))) or "none"},
            ),
            dg.AssetCheckResult(
                check_name=FEATURES_COMPLETE_CHECK,
                passed=len(features) == snapshots,
                metadata={"feature_rows": len(features), "snapshot_rows": int(snapshots)},
            ),
        ],
    )


@dg.asset(
    key=LABELS_KEY,
    deps=[
        dg.AssetDep(
            "market_snapshots",
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-(LONGEST_WINDOW_HOURS + LABEL_HORIZON_HOURS),
                end_offset=LABEL_HORIZON_HOURS,
                allow_nonexistent_upstream_partitions=True,
            ),
        )
    ],
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb_writer",
    group_name="features",
    kinds={"duckdb", "sql"},
    owners=["team:ml-platform"],
    metadata={"dagster/column_schema": column_schema(LABEL_COLUMNS), "dagster/table_name": "features.coin_labels"},
    check_specs=[
        dg.AssetCheckSpec(LABELS_NO_LEAK_CHECK, asset=LABELS_KEY, blocking=True, description="No label column appears in the feature table."),
    ],
)
def coin_labels(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Forward-looking labels per coin and hour: 6h forward volatility, volatility spikes and direction.

    The spike threshold uses only the past; hours whose 6-hour horizon is not observed yet stay NULL.
    Re-materialize a partition after its horizon has passed to fill them.
    """
    window = context.partition_time_window
    horizon = timedelta(hours=LABEL_HORIZON_HOURS)
    params = {
        "read_start": utc_naive(window.start - timedelta(hours=LONGEST_WINDOW_HOURS) - horizon),
        "read_end": utc_naive(window.end + horizon),
        "start": utc_naive(window.start),
        "end": utc_naive(window.end),
    }
    with warehouse.connect() as conn:
        labels = conn.execute(LABELS_SQL, params).df()
        with transaction(conn):
            replace_window(conn, "features.coin_labels", labels, column="partition_hour", start=window.start, end=window.end)
        feature_columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'features' AND table_name = 'coin_features'"
        ).fetchall()}
    label_only = {name for name, _, _ in LABEL_COLUMNS} - {"coin_id", "partition_hour"}
    labeled = labels["volatility_spike"].notna()
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(labels),
            "labeled_rows": int(labeled.sum()),
            "unlabeled_rows": int((~labeled).sum()),
            "spike_rate": float(labels.loc[labeled, "volatility_spike"].astype(float).mean()) if labeled.any() else 0.0,
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
