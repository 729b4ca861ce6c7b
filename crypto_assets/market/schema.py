"""The unified snapshot schema every market source produces, and the batch a source returns.

All timestamps are naive ``datetime64[us]`` values in UTC (DuckDB ``TIMESTAMP``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import pandas as pd


# (column, DuckDB type, description): the single source of truth for the snapshot table,
# its DDL-facing checks and the column schema shown in the UI.
SNAPSHOT_COLUMNS: list[tuple[str, str, str]] = [
    ("coin_id", "VARCHAR", "Source-independent coin id (CoinGecko style, e.g. 'bitcoin')."),
    ("symbol", "VARCHAR", "Ticker symbol, upper case (e.g. 'BTC')."),
    ("observed_at", "TIMESTAMP", "When the price was observed, UTC."),
    ("partition_hour", "TIMESTAMP", "The hourly partition (UTC hour start) this row belongs to."),
    ("price", "DOUBLE", "Last price in USD (candle close for OHLC sources)."),
    ("open", "DOUBLE", "Open price in USD, where the source knows it."),
    ("high", "DOUBLE", "High price in USD, where the source knows it."),
    ("low", "DOUBLE", "Low price in USD, where the source knows it."),
    (
        "volume_quote",
        "DOUBLE",
        "Traded volume in USD: per hour for synthetic and CSV; CoinGecko reports a rolling 24h volume.",
    ),
    ("market_cap", "DOUBLE", "Market capitalisation in USD, where known."),
    ("source", "VARCHAR", "Which source produced the row: synthetic, coingecko or csv."),
    ("ingested_at", "TIMESTAMP", "When this row was written, UTC."),
]
SNAPSHOT_COLUMN_NAMES = [c for c, _, _ in SNAPSHOT_COLUMNS]

QUARANTINE_COLUMNS: list[tuple[str, str, str]] = [
    ("source", "VARCHAR", "Source that produced the rejected record."),
    ("source_ref", "VARCHAR", "Where the record came from, e.g. 'Binance_BTCUSDT_1h.csv:17'."),
    ("partition_hour", "TIMESTAMP", "Hourly partition of the record, NULL when its time is unreadable."),
    ("coin_id", "VARCHAR", "Coin id, where it could be read."),
    ("observed_at", "TIMESTAMP", "Observation time, where it could be read."),
    ("reason", "VARCHAR", "Machine-readable rejection reason, e.g. 'non_positive_price'."),
    ("detail", "VARCHAR", "Human-readable explanation."),
    ("raw_record", "VARCHAR", "The source record as it was read."),
    ("ingested_at", "TIMESTAMP", "When the record was quarantined, UTC."),
]
QUARANTINE_COLUMN_NAMES = [c for c, _, _ in QUARANTINE_COLUMNS]

GROUND_TRUTH_COLUMNS: list[tuple[str, str, str]] = [
    ("coin_id", "VARCHAR", "Coin whose snapshot was altered."),
    ("observed_at", "TIMESTAMP", "Observation time of the altered snapshot, UTC."),
    ("partition_hour", "TIMESTAMP", "Hourly partition of the altered snapshot."),
    ("anomaly_id", "VARCHAR", "Id of the injected event (one event spans one or more hours)."),
    ("anomaly_kind", "VARCHAR", "pump_and_dump, flash_crash, volume_spike or stale_price."),
    ("source", "VARCHAR", "Source whose data received the injection."),
]

USD_QUOTES = frozenset({"USD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "DAI", "FDUSD"})


def utc_naive(ts: datetime) -> datetime:
    """A timezone-aware datetime as naive UTC (naive input is taken to be UTC already)."""
    if ts.tzinfo is None:
        return ts
    return ts.astimezone(UTC).replace(tzinfo=None)


def _empty(columns: list[tuple[str, str, str]]) -> pd.DataFrame:
    import pandas as pd

    dtypes = {"VARCHAR": "object", "DOUBLE": "float64", "TIMESTAMP": "datetime64[us]"}
    return pd.DataFrame({c: pd.Series(dtype=dtypes[t]) for c, t, _ in columns})


def empty_snapshots() -> pd.DataFrame:
    return _empty(SNAPSHOT_COLUMNS)


def empty_quarantine() -> pd.DataFrame:
    return _empty(QUARANTINE_COLUMNS)


def empty_ground_truth() -> pd.DataFrame:
    return _empty(GROUND_TRUTH_COLUMNS)


def conform(df: pd.DataFrame, columns: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Order and type ``df`` as ``columns`` (missing nullable columns become NULL)."""
    import pandas as pd

    out = pd.DataFrame(index=df.index)
    for name, duck_type, _ in columns:
        series = df[name] if name in df.columns else pd.Series(None, index=df.index, dtype="object")
        if duck_type == "DOUBLE":
            out[name] = pd.to_numeric(series, errors="raise").astype("float64")
        elif duck_type == "TIMESTAMP":
            out[name] = pd.to_datetime(series, utc=True).dt.tz_localize(None).astype("datetime64[us]")
        else:
            out[name] = series.astype("object").where(series.notna(), None)
    return out.reset_index(drop=True)


@dataclass
class SourceBatch:
    """What a market source returns for one time window.

    ``snapshots`` and ``ground_truth`` follow the column lists above; ``quarantine`` holds every
    record that was rejected, with a reason; ``stats`` are integer counters for run metadata
    (for example ``rows_read``, ``duplicates_removed``); ``warnings`` are what the source could
    not use or had to decide (an unreadable file, a column it could not interpret), in words, so
    the run log and metadata say it rather than the data silently degrading.
    """

    snapshots: pd.DataFrame = field(default_factory=empty_snapshots)
    quarantine: pd.DataFrame = field(default_factory=empty_quarantine)
    ground_truth: pd.DataFrame = field(default_factory=empty_ground_truth)
    stats: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
