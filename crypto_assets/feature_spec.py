"""The feature spec: the single source of truth for feature names, meanings and version.

Training, scoring, drift and the UI column schema all read this module. The version is a hash
of the SQL that computes the features together with this spec, so any change to either makes a
new version, and a model trained on one version is never scored with another.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources

LABEL_HORIZON_HOURS = 6  # fixed in coin_labels.sql
LONGEST_WINDOW_HOURS = 168
LOOKBACK_HOURS = 200  # every feature window fits inside this many hours before its row

FEATURES_SQL = resources.files("crypto_assets").joinpath("sql/coin_features.sql").read_text()
LABELS_SQL = resources.files("crypto_assets").joinpath("sql/coin_labels.sql").read_text()

# name -> description. Order is the model's input order.
FEATURES: dict[str, str] = {
    "ret_1h": "Log return over the last hour.",
    "ret_4h": "Log return over the last 4 hours.",
    "ret_24h": "Log return over the last 24 hours.",
    "rv_6h": "Realized volatility: root mean square of hourly log returns over 6 hours.",
    "rv_24h": "Realized volatility over 24 hours.",
    "rv_72h": "Realized volatility over 72 hours.",
    "rv_ratio_6h_72h": "Short over long realized volatility (regime change when far from 1).",
    "rv_6h_vs_p90_168h": "6h realized volatility over the 90th percentile of its own values in the past 168 hours.",
    "ret_zscore_24h": "Last hour's return divided by the realized volatility of the 24 hours before it.",
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
    "volume_zscore_24h": "Log volume against the mean and deviation of the 24 hours before it.",
    "volume_zscore_168h": "Log volume against the mean and deviation of the 168 hours before it.",
    "hl_range": "High minus low over price, where the source reports high and low.",
    "ret_1h_vs_market": "Last hour's return minus the median return across coins that hour.",
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

# Calendar encodings describe the hour, not the market. With a few weeks of history each weekday
# appears only a handful of times, and models learn which days happened to be stormy, so models
# train on the market features only; the calendar columns stay available for analysis and drift.
CALENDAR_FEATURES = ("hour_sin", "hour_cos", "dow_sin", "dow_cos")
MODEL_FEATURES = [name for name in FEATURE_NAMES if name not in CALENDAR_FEATURES]

FEATURE_SPEC_VERSION = hashlib.sha256(
    (FEATURES_SQL + json.dumps([FEATURES, FLAGS], sort_keys=True)).encode()
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
