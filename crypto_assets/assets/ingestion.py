"""Ingestion: hourly market snapshots from the configured source, with their quality checks.

One step writes three tables for the same hours, in one transaction: the snapshots, the records
the source rejected (quarantine), and the ground truth of injected anomalies (kept apart from the
snapshots so no model can see it). Partitions are days; the open day holds the hours that have
ended so far, and each hourly run replaces the whole day with what the source says now.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb

from crypto_assets.market.schema import (
    GROUND_TRUTH_COLUMNS,
    QUARANTINE_COLUMNS,
    SNAPSHOT_COLUMNS,
    SourceBatch,
    utc_naive,
)
from crypto_assets.market.sources import MarketSource
from crypto_assets.metadata import column_schema, count_table, markdown_preview
from crypto_assets.partitions import daily_data_partitions, data_backfill_policy, observed_window
from crypto_assets.warehouse import Warehouse, replace_window, transaction

SNAPSHOTS = dg.AssetKey("market_snapshots")
QUARANTINE = dg.AssetKey("market_quarantine")
GROUND_TRUTH = dg.AssetKey("anomaly_ground_truth")

# Check names, as the UI shows them.
SCHEMA_CHECK = "snapshot_schema"
PRICES_CHECK = "valid_prices"
UNIQUE_CHECK = "unique_coin_hour"
WINDOW_CHECK = "observed_within_partition"
COVERAGE_CHECK = "universe_coverage"
FRESHNESS_CHECK = "live_freshness"

MAX_LIVE_STALENESS = timedelta(minutes=90)

_CHECK_SPECS = [
    dg.AssetCheckSpec(
        SCHEMA_CHECK, asset=SNAPSHOTS, blocking=True, description="Columns and types match the unified snapshot schema."
    ),
    dg.AssetCheckSpec(PRICES_CHECK, asset=SNAPSHOTS, blocking=True, description="No null, zero or negative price."),
    dg.AssetCheckSpec(
        UNIQUE_CHECK, asset=SNAPSHOTS, blocking=True, description="At most one row per coin and observation time."
    ),
    dg.AssetCheckSpec(
        WINDOW_CHECK, asset=SNAPSHOTS, blocking=True, description="Every observed_at lies inside its partition's hour."
    ),
    dg.AssetCheckSpec(COVERAGE_CHECK, asset=SNAPSHOTS, description="Every hour covers the configured coin universe."),
    dg.AssetCheckSpec(
        FRESHNESS_CHECK, asset=SNAPSHOTS, description="A live source delivered data for the latest hour."
    ),
]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            SNAPSHOTS,
            description="Hourly market snapshots: one row per coin per observation, in USD, from the configured source.",
            group_name="ingestion",
            kinds={"duckdb", "python"},
            owners=["team:ml-platform"],
            metadata={
                "dagster/column_schema": column_schema(SNAPSHOT_COLUMNS),
                "dagster/table_name": "raw.market_snapshots",
            },
        ),
        dg.AssetSpec(
            QUARANTINE,
            description="Source records rejected during ingestion, each with the reason and the record as read.",
            group_name="ingestion",
            kinds={"duckdb", "python"},
            owners=["team:ml-platform"],
            metadata={
                "dagster/column_schema": column_schema(QUARANTINE_COLUMNS),
                "dagster/table_name": "raw.market_quarantine",
            },
        ),
        dg.AssetSpec(
            GROUND_TRUTH,
            description="Ground truth of injected anomalies, for evaluation only: never a model input.",
            group_name="ingestion",
            kinds={"duckdb", "python"},
            owners=["team:ml-platform"],
            metadata={
                "dagster/column_schema": column_schema(GROUND_TRUTH_COLUMNS),
                "dagster/table_name": "raw.anomaly_ground_truth",
            },
        ),
    ],
    check_specs=_CHECK_SPECS,
    partitions_def=daily_data_partitions,
    backfill_policy=data_backfill_policy,
    pool="duckdb_writer",
)
def market_snapshots(context: dg.AssetExecutionContext, warehouse: Warehouse, market_source: MarketSource):
    """Fetch the partition's ended hours from the market source and replace the partition's rows in DuckDB."""
    window = context.partition_time_window
    start, end = observed_window(window)
    batch = market_source.fetch(start, end) if end > start else SourceBatch()
    context.log.info(
        f"{market_source.kind}: {len(batch.snapshots)} snapshots, {len(batch.quarantine)} quarantined for {start}..{end}"
    )
    for warning in batch.warnings:
        context.log.warning(f"{market_source.kind}: {warning}")
    with warehouse.connect() as conn:
        with transaction(conn):
            bounds = {"column": "partition_hour", "start": window.start, "end": window.end}
            replace_window(conn, "raw.market_snapshots", batch.snapshots, **bounds)
            replace_window(conn, "raw.market_quarantine", batch.quarantine, **bounds)
            replace_window(conn, "raw.anomaly_ground_truth", batch.ground_truth, **bounds)
        checks = run_snapshot_checks(conn, start, end, market_source)
        preview = conn.execute(
            """
            SELECT symbol, observed_at, price, volume_quote, market_cap FROM raw.market_snapshots
            WHERE partition_hour = (SELECT max(partition_hour) FROM raw.market_snapshots
                                    WHERE partition_hour >= ? AND partition_hour < ?)
            ORDER BY market_cap DESC NULLS LAST, symbol
            """,
            [utc_naive(start), utc_naive(end)],
        ).df()

    snapshots, quarantine, truth = batch.snapshots, batch.quarantine, batch.ground_truth
    quarantine_reasons = quarantine["reason"].value_counts().to_dict() if not quarantine.empty else {}
    anomaly_kinds = truth["anomaly_kind"].value_counts().to_dict() if not truth.empty else {}
    yield dg.MaterializeResult(
        asset_key=SNAPSHOTS,
        metadata={
            "dagster/row_count": len(snapshots),
            "coins": int(snapshots["coin_id"].nunique()),
            "hours": int(snapshots["partition_hour"].nunique()),
            "observed_until": str(utc_naive(end)),
            "source": market_source.kind,
            "quarantined": len(quarantine),
            **{f"source_{k}": int(v) for k, v in batch.stats.items()},
            "source_warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in batch.warnings) or "_none_"),
            "preview": markdown_preview(preview, limit=20),
        },
    )
    yield dg.MaterializeResult(
        asset_key=QUARANTINE,
        metadata={
            "dagster/row_count": len(quarantine),
            **{f"reason_{k}": int(v) for k, v in quarantine_reasons.items()},
            "reasons": count_table(quarantine_reasons, "reason"),
            "preview": markdown_preview(quarantine[["source_ref", "reason", "detail", "raw_record"]]),
        },
    )
    yield dg.MaterializeResult(
        asset_key=GROUND_TRUTH,
        metadata={
            "dagster/row_count": len(truth),
            "anomaly_events": int(truth["anomaly_id"].nunique()) if not truth.empty else 0,
            "kinds": count_table(anomaly_kinds, "anomaly_kind"),
        },
    )
    yield from checks


# --- checks: each reads what was written for [start, end) --------------------------------------


def _bounds(start: datetime, end: datetime) -> list[datetime]:
    return [utc_naive(start), utc_naive(end)]


def check_schema(conn: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    found = conn.execute(
        """
        SELECT column_name, data_type FROM information_schema.columns
        WHERE table_schema = 'raw' AND table_name = 'market_snapshots' ORDER BY ordinal_position
        """
    ).fetchall()
    expected = [(name, duck_type) for name, duck_type, _ in SNAPSHOT_COLUMNS]
    missing = [f"{n} {t}" for n, t in expected if (n, t) not in found]
    unexpected = [f"{n} {t}" for n, t in found if (n, t) not in expected]
    return dg.AssetCheckResult(
        asset_key=SNAPSHOTS,
        check_name=SCHEMA_CHECK,
        passed=not missing and not unexpected,
        metadata={"missing_or_wrong_type": ", ".join(missing) or "none", "unexpected": ", ".join(unexpected) or "none"},
    )


def check_prices(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> dg.AssetCheckResult:
    bad = conn.execute(
        """
        SELECT coin_id, observed_at, price FROM raw.market_snapshots
        WHERE partition_hour >= ? AND partition_hour < ? AND (price IS NULL OR NOT isfinite(price) OR price <= 0)
        ORDER BY observed_at, coin_id
        """,
        _bounds(start, end),
    ).df()
    return dg.AssetCheckResult(
        asset_key=SNAPSHOTS,
        check_name=PRICES_CHECK,
        passed=bad.empty,
        metadata={"bad_prices": len(bad), "examples": markdown_preview(bad)},
    )


def check_unique(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> dg.AssetCheckResult:
    dupes = conn.execute(
        """
        SELECT coin_id, observed_at, count(*) AS copies FROM raw.market_snapshots
        WHERE partition_hour >= ? AND partition_hour < ?
        GROUP BY coin_id, observed_at HAVING count(*) > 1 ORDER BY copies DESC, observed_at
        """,
        _bounds(start, end),
    ).df()
    return dg.AssetCheckResult(
        asset_key=SNAPSHOTS,
        check_name=UNIQUE_CHECK,
        passed=dupes.empty,
        metadata={"duplicated_keys": len(dupes), "examples": markdown_preview(dupes)},
    )


def check_within_partition(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> dg.AssetCheckResult:
    outside = conn.execute(
        """
        SELECT coin_id, partition_hour, observed_at FROM raw.market_snapshots
        WHERE partition_hour >= ? AND partition_hour < ?
          AND (observed_at < partition_hour OR observed_at >= partition_hour + INTERVAL 1 HOUR
               OR partition_hour <> date_trunc('hour', partition_hour))
        ORDER BY observed_at
        """,
        _bounds(start, end),
    ).df()
    return dg.AssetCheckResult(
        asset_key=SNAPSHOTS,
        check_name=WINDOW_CHECK,
        passed=outside.empty,
        metadata={"rows_outside_partition": len(outside), "examples": markdown_preview(outside)},
    )


def check_coverage(
    conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime, expected_coins: list[str] | None
) -> dg.AssetCheckResult:
    """Every hour should hold every expected coin; for replayed files, every coin seen in the window."""
    if expected_coins is None:
        expected_coins = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT coin_id FROM raw.market_snapshots WHERE partition_hour >= ? AND partition_hour < ?",
                _bounds(start, end),
            ).fetchall()
        ]
    hours = int((utc_naive(end) - utc_naive(start)).total_seconds() // 3600)
    per_coin = conn.execute(
        """
        SELECT e.coin_id, count(DISTINCT s.partition_hour) AS hours_present
        FROM unnest(?::VARCHAR[]) AS e(coin_id)
        LEFT JOIN raw.market_snapshots s
          ON s.coin_id = e.coin_id AND s.partition_hour >= ? AND s.partition_hour < ?
        GROUP BY e.coin_id
        """,
        [expected_coins, *_bounds(start, end)],
    ).df()
    per_coin["hours_missing"] = hours - per_coin["hours_present"]
    gaps = per_coin[per_coin["hours_missing"] > 0].sort_values("hours_missing", ascending=False)
    expected_cells = hours * len(expected_coins)
    coverage = float(per_coin["hours_present"].sum()) / expected_cells if expected_cells else 1.0
    return dg.AssetCheckResult(
        asset_key=SNAPSHOTS,
        check_name=COVERAGE_CHECK,
        passed=gaps.empty and bool(expected_coins),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "coverage": coverage,
            "expected_coins": len(expected_coins),
            "coins_with_gaps": len(gaps),
            "gaps": markdown_preview(gaps),
        },
    )


def check_freshness(
    conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime, *, live: bool, now: datetime | None = None
) -> dg.AssetCheckResult:
    """For a live source, the run covering the latest hour must have data from that hour."""
    now = now or datetime.now(UTC)
    if not live or end < now - timedelta(hours=2):
        return dg.AssetCheckResult(
            asset_key=SNAPSHOTS,
            check_name=FRESHNESS_CHECK,
            passed=True,
            metadata={"applicable": False, "why": "source is not live" if not live else "window is historical"},
        )
    latest = conn.execute(
        "SELECT max(observed_at) FROM raw.market_snapshots WHERE partition_hour >= ? AND partition_hour < ?",
        _bounds(start, end),
    ).fetchone()[0]
    lag_minutes = None if latest is None else (utc_naive(end) - latest).total_seconds() / 60
    return dg.AssetCheckResult(
        asset_key=SNAPSHOTS,
        check_name=FRESHNESS_CHECK,
        passed=latest is not None and lag_minutes <= MAX_LIVE_STALENESS.total_seconds() / 60,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "applicable": True,
            "latest_observed_at": str(latest),
            "lag_minutes": lag_minutes if lag_minutes is not None else -1.0,
        },
    )


def run_snapshot_checks(conn, start: datetime, end: datetime, market_source: MarketSource) -> list[dg.AssetCheckResult]:
    return [
        check_schema(conn),
        check_prices(conn, start, end),
        check_unique(conn, start, end),
        check_within_partition(conn, start, end),
        check_coverage(conn, start, end, market_source.expected_coins()),
        check_freshness(conn, start, end, live=market_source.is_live),
    ]
