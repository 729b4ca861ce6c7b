"""Time the feature SQL in DuckDB against the plain pandas reference, and check that they agree.

    python -m benchmarks.feature_benchmark --days 365 --coins 100
    python -m benchmarks.feature_benchmark --days 30 --coins 20 --repeat 1

Writes ``--days`` x ``--coins`` hourly synthetic snapshots (seed 7, from 2025-01-01 UTC, the
project's default anomaly rate) into a temporary DuckDB file, then runs each implementation
``--repeat`` times over the whole range and reports the median. The SQL time includes scanning
the snapshot table in the DuckDB file and returning the result as a DataFrame; pandas starts from
the snapshots already in memory, so it is not charged for any I/O. Every feature column must agree within
rtol 1e-9 / atol 1e-12 (NaN equal to NaN); any disagreement exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from crypto_assets.feature_spec import FEATURES_SQL, LOOKBACK_HOURS
from crypto_assets.market.schema import utc_naive
from crypto_assets.market.sources import SyntheticMarket
from crypto_assets.market.synthetic import synthetic_window
from crypto_assets.market.universe import default_universe
from crypto_assets.warehouse import Warehouse, replace_window, transaction
from crypto_assets_tests.features_pandas import OUTPUT_COLUMNS, pandas_features

START = datetime(2025, 1, 1, tzinfo=UTC)
SEED = 7
RTOL = 1e-9
ATOL = 1e-12
KEY_COLUMNS = ["coin_id", "symbol", "partition_hour"]
VALUE_COLUMNS = [c for c in OUTPUT_COLUMNS if c not in KEY_COLUMNS]


def sql_features(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pd.DataFrame:
    """coin_features.sql over [start, end), with the parameters the asset passes."""
    params = {
        "read_start": utc_naive(start - timedelta(hours=LOOKBACK_HOURS)),
        "start": utc_naive(start),
        "end": utc_naive(end),
    }
    # Through Arrow: DuckDB's .df() spends seconds converting 876,000 wide rows; Arrow takes a fraction.
    return conn.sql(FEATURES_SQL, params=params).to_arrow_table().to_pandas()


def compare(sql: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Per value column: the largest relative and absolute differences, and how many rows are outside tolerance.

    Both frames must hold the same rows in the same order (ValueError otherwise). The largest
    relative difference is usually at a value near zero, where atol is what applies.
    """
    if list(sql.columns) != list(reference.columns):
        raise ValueError(f"columns differ: {list(sql.columns)} vs {list(reference.columns)}")
    if not sql[KEY_COLUMNS].reset_index(drop=True).equals(reference[KEY_COLUMNS].reset_index(drop=True)):
        raise ValueError("the two results hold different (coin_id, symbol, partition_hour) rows")
    rows = []
    for column in VALUE_COLUMNS:
        a = sql[column].to_numpy(dtype=float)
        b = reference[column].to_numpy(dtype=float)
        close = np.isclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)
        scale = np.maximum(np.abs(a), np.abs(b))
        both = ~np.isnan(a) & ~np.isnan(b) & (scale > 0)
        difference = np.abs(a[both] - b[both])
        rows.append(
            {
                "column": column,
                "max_rel_diff": float((difference / scale[both]).max()) if difference.size else 0.0,
                "max_abs_diff": float(difference.max()) if difference.size else 0.0,
                "mismatches": int((~close).sum()),
            }
        )
    return pd.DataFrame(rows)


def _timed(fn: Callable[[], pd.DataFrame], repeat: int) -> tuple[pd.DataFrame, list[float]]:
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - began)
    return result, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30, help="days of hourly data")
    parser.add_argument("--coins", type=int, default=20, help="coins in the universe (up to 1000)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs of each implementation; the median is reported"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args(argv)
    if args.days < 1 or args.repeat < 1:
        parser.error("--days and --repeat must be at least 1")

    end = START + timedelta(days=args.days)
    began = time.perf_counter()
    batch = synthetic_window(default_universe(args.coins), SEED, START, end, SyntheticMarket().anomaly_rate)
    snapshots = batch.snapshots
    print(
        f"synthetic market: {args.coins} coins x {args.days} days from {START:%Y-%m-%d} UTC, seed {SEED}: "
        f"{len(snapshots):,} snapshot rows ({time.perf_counter() - began:.1f} s to generate)"
    )

    with tempfile.TemporaryDirectory() as folder:
        warehouse = Warehouse(database=str(Path(folder) / "benchmark.duckdb"))
        with warehouse.connect() as conn:
            with transaction(conn):
                replace_window(conn, "raw.market_snapshots", snapshots, column="partition_hour", start=START, end=end)
            sql, sql_seconds = _timed(lambda: sql_features(conn, START, end), args.repeat)
    reference, pandas_seconds = _timed(lambda: pandas_features(snapshots, START, end), args.repeat)

    rows = len(sql)
    print(f"feature rows: {rows:,} ({len(sql.columns)} columns); median of {args.repeat} run(s)")
    for name, seconds in [
        ("DuckDB SQL (reads the DuckDB file)", sql_seconds),
        ("pandas (snapshots in memory, no I/O)", pandas_seconds),
    ]:
        median = statistics.median(seconds)
        runs = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"  {name:38s} {median:9.2f} s {rows / median:12,.0f} rows/s   runs: {runs}")
    print(f"  pandas time / SQL time: {statistics.median(pandas_seconds) / statistics.median(sql_seconds):.2f}")

    agreement = compare(sql, reference)
    print(f"\nagreement, rtol={RTOL:g} atol={ATOL:g}, NaN equal to NaN:")
    print(
        agreement.to_string(index=False, formatters={"max_rel_diff": "{:.2e}".format, "max_abs_diff": "{:.2e}".format})
    )
    failed = agreement[agreement["mismatches"] > 0]
    if not failed.empty:
        print(f"\nDISAGREEMENT in {len(failed)} column(s): {', '.join(failed['column'])}")
    else:
        print(f"\nall {len(agreement)} value columns agree")
    if args.json:
        sql_s, pandas_s = statistics.median(sql_seconds), statistics.median(pandas_seconds)
        print(
            json.dumps(
                {
                    "days": args.days,
                    "coins": args.coins,
                    "rows": rows,
                    "sql_s": round(sql_s, 3),
                    "pandas_s": round(pandas_s, 3),
                    "pandas_over_sql": round(pandas_s / sql_s, 3),
                    "columns_disagreeing": len(failed),
                }
            )
        )
    return 1 if not failed.empty else 0


if __name__ == "__main__":
    sys.exit(main())
