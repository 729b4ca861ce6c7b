"""The feature spec: the single source of truth for feature names, meanings and version.

Training, scoring, drift and the UI column schema all read this module; which features each model
reads is its family's (``crypto_assets/ml/``). The version is a hash of the SQL that computes the
features (as executed: comments and layout do not count) and of the feature list, so a change to
either makes a new version, and a model trained on one version is never scored with another.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources

LABEL_HORIZON_HOURS = 6  # fixed in coin_labels.sql
LONGEST_WINDOW_HOURS = 168
LOOKBACK_HOURS = 200  # every feature window fits inside this many hours before its row

FEATURES_SQL = resources.files("crypto_assets").joinpath("sql/coin_features.sql").read_text()
LABELS_SQL = resources.files("crypto_assets").joinpath("sql/coin_labels.sql").read_text()

# name -> description. Order is the table's column order.
FEATURES: dict[str, str] = {
    "ret_1h": "Log return over the last hour.",
    "ret_4h": "Log return over the last 4 hours.",
    "ret_24h": "Log return over the last 24 hours.",
    "rv_6h": "Realized volatility: root mean square of hourly log returns over 6 hours.",
    "rv_24h": "Realized volatility over 24 hours.",
    "rv_72h": "Realized volatility over 72 hours.",
    "rv_168h": "Realized volatility over 168 hours (a week).",
    "rv_ratio_6h_72h": "Short over long realized volatility (regime change when far from 1).",
    "rv_6h_vs_p90_168h": (
        "6h realized volatility over the 90th percentile of its own values in the past 168 hours (the spike threshold)."
    ),
    "rv_1h_vs_p90_168h": "Absolute last-hour return over the spike threshold (HAR's hourly component).",
    "rv_24h_vs_p90_168h": "24h realized volatility over the spike threshold (HAR's daily component).",
    "rv_168h_vs_p90_168h": "168h realized volatility over the spike threshold (HAR's weekly component).",
    "parkinson_6h_vs_p90_168h": (
        "Parkinson range volatility over 6 hours (from high and low) over the spike threshold; NULL without high/low."
    ),
    "garman_klass_24h_vs_p90_168h": (
        "Garman-Klass volatility over 24 hours (from open, high, low, close) over the "
        "spike threshold; NULL without OHLC."
    ),
    "vol_of_vol_72h": "Volatility of volatility: standard deviation over mean of rv_6h in the past 72 hours.",
    "hours_since_spike": (
        "Hours since rv_6h last exceeded the spike threshold (0 = now), 25 when not in the past 24 hours."
    ),
    "market_rv_6h_vs_p90_168h": "Mean of rv_6h_vs_p90_168h across coins that hour (market-wide volatility).",
    "rv_24h_vs_market": (
        "rv_24h over its median across coins that hour: the coin's own volatility regime, apart from the market's."
    ),
    "leader_rv_6h_vs_p90_168h": (
        "rv_6h_vs_p90_168h of the largest coin that hour (by market cap, else by quote volume)."
    ),
    "ret_zscore_24h": "Last hour's return divided by the realized volatility of the 24 hours before it.",
    "ret_robust_z_168h": (
        "Last hour's return over 1.4826 x the median absolute hourly return of the 168 hours before it."
    ),
    "max_abs_ret_zscore_6h": "Largest |ret_zscore_24h| in the last 6 hours.",
    "reversal_1h": (
        "-(this hour's return x the previous hour's) over the squared 24h volatility before: large after "
        "a jump that reverts."
    ),
    "unchanged_price_6h": "Hours among the last 6 whose price equals the hour before (a stale feed repeats it).",
    "rsi_14": "RSI over 14 hourly changes, with simple averages (Cutler), 0-100.",
    "macd_line": "MACD(12, 26) line divided by price: (EMA12 - EMA26) / price.",
    "macd_signal": "EMA(9) of the MACD line.",
    "macd_hist": "MACD line minus its signal.",
    "bb_pct_b": "Bollinger %B over 20 hours and 2 standard deviations.",
    "bb_bandwidth": "Bollinger bandwidth over 20 hours: 4 standard deviations over the mean.",
    "price_sma_24_ratio": "Price over its 24-hour simple moving average.",
    "ema_12_26_ratio": "EMA(12) over EMA(26).",
    "momentum_12h": "Price change over 12 hours, divided by the 24-hour average price.",
    "roc_12h": "Rate of change over 12 hours, in percent.",
    "volume_zscore_24h": "ln(1 + volume) against the mean and deviation of the 24 hours before it.",
    "volume_zscore_168h": "ln(1 + volume) against the mean and deviation of the 168 hours before it.",
    "volume_vs_median_168h": (
        "ln(1 + volume) minus its median over the 168 hours before (log ratio to the typical hour)."
    ),
    "volume_without_move": "volume_zscore_24h minus |ret_zscore_24h|: volume that did not move the price.",
    "unchanged_volume_6h": "Hours among the last 6 whose volume equals the hour before (a stale feed repeats it).",
    "market_volume_zscore_24h": "Mean of volume_zscore_24h across coins that hour (market-wide volume surprise).",
    "volume_zscore_vs_market": "volume_zscore_24h minus the market's: volume surprise of this coin alone.",
    "volume_vs_24h_ago": (
        "ln(1 + volume) minus its value 24 hours before (the same hour of day: no intraday seasonality)."
    ),
    "market_volume_vs_24h_ago": "Mean of volume_vs_24h_ago across coins that hour (market-wide volume build-up).",
    "hl_range": "High minus low over price, where the source reports high and low.",
    "hl_range_vs_median_168h": "hl_range over its median in the 168 hours before.",
    "ret_1h_vs_market": "Last hour's return minus the median return across coins that hour.",
    "ret_1h_vs_market_zscore": "ret_1h_vs_market over rv_24h: the coin's own move, in its daily volatility.",
    "ret_1h_rank": "Percentile rank of the last hour's return across coins that hour (0-1).",
    "volume_rank": "Percentile rank of volume across coins that hour (0-1).",
    "hour_sin": "Hour of day, cyclic encoding (sine).",
    "hour_cos": "Hour of day, cyclic encoding (cosine).",
    "dow_sin": "Day of week, cyclic encoding (sine).",
    "dow_cos": "Day of week, cyclic encoding (cosine).",
}

FLAGS: dict[str, str] = {
    "missing_hours_24h": "Hours missing among the 24 before this one (0 when the series is complete).",
    "in_warmup": "True while the coin has less than 168 hours of history, so long windows are partial.",
}

FEATURE_NAMES = list(FEATURES)

# Drift compares the features the models read, without the calendar encodings (they move by design).
DRIFT_FEATURES = [name for name in FEATURE_NAMES if name not in ("hour_sin", "hour_cos", "dow_sin", "dow_cos")]


def normalized_sql(sql: str) -> str:
    """``sql`` without comments, with runs of whitespace as one space: what the database executes.

    Quoted strings and identifiers are kept as they are, so a comment or a line break never changes
    the version, and a change inside a literal always does.
    """
    tokens = re.findall(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\s+|[^'\"\s/-]+|[/-]", sql, flags=re.S)
    kept = [" " if t.isspace() else t for t in tokens if not t.startswith(("--", "/*"))]
    return re.sub(r" {2,}", " ", "".join(kept)).strip()


# The version names what the computation is: the feature SQL as executed and the feature list with
# its types (names, order, flags). Descriptions and comments are documentation: editing them never
# makes stored rows stale or retires a model.
FEATURE_SPEC_VERSION = hashlib.sha256(
    json.dumps([normalized_sql(FEATURES_SQL), list(FEATURES), list(FLAGS)]).encode()
).hexdigest()[:12]


def feature_table_columns() -> list[tuple[str, str, str]]:
    """(name, DuckDB type, description) of features.coin_features, for DDL checks and the UI."""
    return [
        ("coin_id", "VARCHAR", "Coin id."),
        ("symbol", "VARCHAR", "Ticker symbol."),
        ("partition_hour", "TIMESTAMP", "Hour (UTC) the features describe, using data up to and including it."),
        *[(name, "DOUBLE", description) for name, description in FEATURES.items()],
        ("missing_hours_24h", "BIGINT", FLAGS["missing_hours_24h"]),
        ("in_warmup", "BOOLEAN", FLAGS["in_warmup"]),
        ("feature_spec_version", "VARCHAR", "Version of the feature spec that computed the row."),
    ]


LABEL_COLUMNS: list[tuple[str, str, str]] = [
    ("coin_id", "VARCHAR", "Coin id."),
    ("partition_hour", "TIMESTAMP", "Hour (UTC) the label is for; it looks 6 hours ahead of it."),
    ("fwd_vol_6h", "DOUBLE", "Realized volatility of the next 6 hourly returns; NULL until all 6 are observed."),
    ("vol_threshold", "DOUBLE", "90th percentile of trailing 6h realized volatility over the past 168 hours."),
    ("volatility_spike", "BOOLEAN", "fwd_vol_6h above vol_threshold; NULL when either is unknown."),
    ("fwd_return_6h", "DOUBLE", "Log return over the next 6 hours; NULL until observed."),
    ("direction_up", "BOOLEAN", "Whether the price 6 hours ahead is higher."),
]
