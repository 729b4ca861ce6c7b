"""A plain pandas implementation of ``crypto_assets/sql/coin_features.sql``.

It is the reference the SQL is checked against and the baseline it is timed against, so it is
written to be read next to the SQL, not to be fast: one coin at a time, time-based rolling windows
on a DatetimeIndex, and "the value N hours ago" as a shift of the index by N hours. Where a rolling
window does not fit (the truncated EMAs, and sums that need more precision than a sliding sum
keeps) the window's values are laid out on an hourly grid, one column per age in hours. Each
helper names the SQL frame it stands for.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from pandas.api.typing import Rolling

from crypto_assets.feature_spec import FEATURE_NAMES, FLAGS, LOOKBACK_HOURS
from crypto_assets.market.schema import utc_naive

OUTPUT_COLUMNS = ["coin_id", "symbol", "partition_hour", *FEATURE_NAMES, *FLAGS]
_EPOCH = pd.Timestamp("1970-01-01")


def _hours(n: int) -> pd.Timedelta:
    return pd.Timedelta(hours=n)


def _up_to_now(s: pd.Series, preceding: int) -> Rolling:
    """Rows in [t - preceding, t]: RANGE BETWEEN <preceding> HOUR PRECEDING AND CURRENT ROW."""
    return s.rolling(_hours(preceding), closed="both")


def _before_now(s: pd.Series, preceding: int) -> Rolling:
    """Rows in [t - preceding, t): RANGE BETWEEN <preceding> HOUR PRECEDING AND 1 HOUR PRECEDING.

    The two frames are the same because every row sits on the hour.
    """
    return s.rolling(_hours(preceding), closed="left", min_periods=0)


def _hours_ago(s: pd.Series, hours: int) -> pd.Series:
    """The value exactly ``hours`` before each row, NaN when that hour has no row."""
    return s.shift(freq=_hours(hours)).reindex(s.index)


def _by_age(s: pd.Series, max_age: int) -> pd.DataFrame:
    """Row t, column k: the value k hours before t (NaN where that hour has no row), for k = 0..max_age.

    Rows are a complete hourly grid, so the window of hour t is the max_age slots before it.
    """
    hourly = s.asfreq("h")
    padded = np.concatenate([np.full(max_age, np.nan), hourly.to_numpy()])
    return pd.DataFrame(sliding_window_view(padded, max_age + 1)[:, ::-1], index=hourly.index)


def _truncated_ema(s: pd.Series, span: int) -> pd.Series:
    """EMA over the last 4 x span hours: sum(w^age * x) / sum(w^age), w = 1 - 2/(span + 1), age in hours.

    Both sums cover only the rows that exist, so a gap drops its own hours' weight and nothing else.
    """
    decay = (span - 1) / (span + 1)  # written as in the SQL, so the weights are the same doubles
    window = _by_age(s, 4 * span - 1)
    weights = decay ** window.columns.to_numpy(dtype=float)
    ema = window.mul(weights).sum(axis=1) / window.notna().mul(weights).sum(axis=1)
    return ema.reindex(s.index)


def _window(s: pd.Series, first_age: int, last_age: int) -> pd.DataFrame:
    """Row t: the values aged first_age..last_age hours before t, one column each, for the rows of ``s``.

    For the sums where pandas' rolling aggregates, which are one-pass (they add and remove values
    as the window slides), lose too much precision for a reference checked to 1e-9: squared
    returns span orders of magnitude and drop to zero on stale prices, and deviations of prices
    near 60,000 with a small spread cancel. Aggregating each window's values afresh avoids both.
    """
    return _by_age(s, last_age).loc[s.index, first_age:]


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """numerator / nullif(denominator, 0)."""
    return numerator / denominator.where(denominator != 0)


def _count(flags: pd.Series, hours: int) -> pd.Series:
    """How many of the last ``hours`` hours (this one included) have the flag: count_if over ROWS hours-1 PRECEDING."""
    return _window(flags.astype(float), 0, hours - 1).sum(axis=1)


def _coin_features(coin: pd.DataFrame) -> pd.DataFrame:
    """Every per-coin feature for one coin's rows, indexed by partition_hour (sorted, unique).

    The symbol, volume and size ride along for the cross-sectional features.
    """
    price = coin["price"].where(coin["price"] > 0)  # a non-positive price is missing, as in the SQL
    volume = coin["volume_quote"]
    log_volume = np.log1p(volume.where(volume >= 0))  # zero volume is 0, not -inf
    has_range = (coin["high"] > 0) & (coin["low"] > 0)
    hl_range = ((coin["high"] - coin["low"]) / price).where(has_range)
    log_hl = np.log(coin["high"] / coin["low"]).where(has_range)
    log_co = np.log(price / coin["open"]).where(coin["open"] > 0)
    price_1h_ago = _hours_ago(price, 1)
    price_12h_ago = _hours_ago(price, 12)

    ret_1h = np.log(price / price_1h_ago)
    squared = ret_1h * ret_1h
    rv_6h = np.sqrt(_window(squared, 0, 5).mean(axis=1))
    rv_24h = np.sqrt(_window(squared, 0, 23).mean(axis=1))
    rv_72h = np.sqrt(_window(squared, 0, 71).mean(axis=1))
    rv_168h = np.sqrt(_window(squared, 0, 167).mean(axis=1))
    rv_prior_24h = np.sqrt(_window(squared, 1, 24).mean(axis=1))
    # The spike threshold: 90th percentile of rv_6h over the last week (quantile_cont, linear).
    p90 = _up_to_now(rv_6h, 167).quantile(0.9, interpolation="linear")
    rv_6h_vs_p90 = _ratio(rv_6h, p90)
    parkinson_6h = np.sqrt(_window(log_hl * log_hl / (4 * np.log(2)), 0, 5).mean(axis=1))
    garman_klass_term = 0.5 * log_hl * log_hl - (2 * np.log(2) - 1) * log_co * log_co
    garman_klass_24h = np.sqrt(_window(garman_klass_term, 0, 23).mean(axis=1).clip(lower=0))
    rv_6h_last_72h = _window(rv_6h, 0, 71)
    ret_zscore = _ratio(ret_1h, rv_prior_24h)
    # Hours since rv_6h last exceeded its threshold: the youngest age in 0..24 with a crossing.
    crossed = _by_age((rv_6h > p90).astype(float).where(rv_6h.notna() & p90.notna()), 24).loc[coin.index]
    hours_since_spike = crossed.eq(1.0).idxmax(axis=1).where(crossed.eq(1.0).any(axis=1), 25).astype(float)

    # Cutler's RSI: simple sums of the last 14 hourly gains and losses.
    change = price - price_1h_ago
    gains = _up_to_now(change.clip(lower=0), 13).sum()
    losses = _up_to_now((-change).clip(lower=0), 13).sum()
    rsi = (100 * gains / (gains + losses)).where(gains + losses > 0, 50.0)

    ema_12 = _truncated_ema(price, 12)
    ema_26 = _truncated_ema(price, 26)
    macd_line = (ema_12 - ema_26) / price
    macd_signal = _truncated_ema(macd_line, 9)

    sma_20 = _up_to_now(price, 19).mean()
    sd_20 = _window(price, 0, 19).std(axis=1, ddof=0)
    sma_24 = _up_to_now(price, 23).mean()
    volume_zscore_24h = _ratio(log_volume - _before_now(log_volume, 24).mean(), _window(log_volume, 1, 24).std(axis=1))

    hour = (coin.index - _EPOCH) / _hours(1)
    earliest_in_lookback = _up_to_now(pd.Series(hour, index=coin.index), LOOKBACK_HOURS).min()
    rows_prior_24h = _before_now(pd.Series(1.0, index=coin.index), 24).sum()

    return pd.DataFrame(
        {
            "ret_1h": ret_1h,
            "ret_4h": np.log(price / _hours_ago(price, 4)),
            "ret_24h": np.log(price / _hours_ago(price, 24)),
            "rv_6h": rv_6h,
            "rv_24h": rv_24h,
            "rv_72h": rv_72h,
            "rv_168h": rv_168h,
            "rv_ratio_6h_72h": _ratio(rv_6h, rv_72h),
            "rv_6h_vs_p90_168h": rv_6h_vs_p90,
            "rv_1h_vs_p90_168h": _ratio(ret_1h.abs(), p90),
            "rv_24h_vs_p90_168h": _ratio(rv_24h, p90),
            "rv_168h_vs_p90_168h": _ratio(rv_168h, p90),
            "parkinson_6h_vs_p90_168h": _ratio(parkinson_6h, p90),
            "garman_klass_24h_vs_p90_168h": _ratio(garman_klass_24h, p90),
            "vol_of_vol_72h": _ratio(rv_6h_last_72h.std(axis=1), rv_6h_last_72h.mean(axis=1)),
            "hours_since_spike": hours_since_spike,
            "ret_zscore_24h": ret_zscore,
            "ret_robust_z_168h": _ratio(ret_1h, 1.4826 * _window(ret_1h.abs(), 1, 168).median(axis=1)),
            "max_abs_ret_zscore_6h": _window(ret_zscore.abs(), 0, 5).max(axis=1),
            "reversal_1h": -(ret_1h * _hours_ago(ret_1h, 1)) / (rv_prior_24h * rv_prior_24h).where(rv_prior_24h != 0),
            "unchanged_price_6h": _count(ret_1h == 0, 6),
            "rsi_14": rsi,
            "macd_line": macd_line,
            "macd_signal": macd_signal,
            "macd_hist": macd_line - macd_signal,
            "bb_pct_b": _ratio(price - (sma_20 - 2 * sd_20), 4 * sd_20),
            "bb_bandwidth": 4 * sd_20 / sma_20,
            "price_sma_24_ratio": price / sma_24,
            "ema_12_26_ratio": ema_12 / ema_26,
            "momentum_12h": (price - price_12h_ago) / sma_24,
            "roc_12h": 100 * (price / price_12h_ago - 1),
            "volume_zscore_24h": volume_zscore_24h,
            "volume_zscore_168h": _ratio(
                log_volume - _before_now(log_volume, 168).mean(), _window(log_volume, 1, 168).std(axis=1)
            ),
            "volume_vs_median_168h": log_volume - _window(log_volume, 1, 168).median(axis=1),
            "volume_without_move": volume_zscore_24h - ret_zscore.abs(),
            "unchanged_volume_6h": _count(log_volume == _hours_ago(log_volume, 1), 6),
            "volume_vs_24h_ago": log_volume - _hours_ago(log_volume, 24),
            "hl_range": hl_range,
            "hl_range_vs_median_168h": _ratio(hl_range, _window(hl_range, 1, 168).median(axis=1)),
            "missing_hours_24h": (24 - rows_prior_24h).astype("int64"),
            "in_warmup": earliest_in_lookback > hour - 168,
            "symbol": coin["symbol"],
            "volume_quote": volume,
            "size": coin["market_cap"].fillna(volume),
        },
        index=coin.index,
    )


def _percent_rank(frame: pd.DataFrame, column: str) -> pd.Series:
    """DuckDB's percent_rank among the hour's non-null values: (rank - 1) / (n - 1), 0 for a lone value.

    pandas' rank(pct=True) is rank / n, so the rank and the count are taken separately instead.
    """
    by_hour = frame.groupby("partition_hour")[column]
    rank = by_hour.rank(method="min")
    count = by_hour.transform("count")
    return ((rank - 1) / (count - 1)).where(count > 1, 0.0).where(frame[column].notna())


def pandas_features(snapshots: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """The rows of coin_features.sql for partition_hour in [start, end), from snapshot rows in memory.

    Like the SQL, it reads only the LOOKBACK_HOURS before ``start``; rows are ordered by hour, then coin.
    """
    start, end = pd.Timestamp(utc_naive(start)), pd.Timestamp(utc_naive(end))
    hours = snapshots["partition_hour"]
    snap = snapshots[(hours >= start - _hours(LOOKBACK_HOURS)) & (hours < end)]

    per_coin = []
    for coin_id, coin in snap.groupby("coin_id", sort=False):
        features = _coin_features(coin.set_index("partition_hour").sort_index())
        per_coin.append(features.assign(coin_id=coin_id).reset_index())
    out = pd.concat(per_coin, ignore_index=True)
    out = out[out["partition_hour"] >= start].reset_index(drop=True)

    # Cross-sectional features compare the coins within each hour.
    by_hour = out.groupby("partition_hour")
    out["ret_1h_vs_market"] = out["ret_1h"] - by_hour["ret_1h"].transform("median")
    out["market_rv_6h_vs_p90_168h"] = by_hour["rv_6h_vs_p90_168h"].transform("mean")
    out["rv_24h_vs_market"] = _ratio(out["rv_24h"], by_hour["rv_24h"].transform("median"))
    out["market_volume_zscore_24h"] = by_hour["volume_zscore_24h"].transform("mean")
    out["volume_zscore_vs_market"] = out["volume_zscore_24h"] - out["market_volume_zscore_24h"]
    out["ret_1h_vs_market_zscore"] = _ratio(out["ret_1h_vs_market"], out["rv_24h"])
    out["market_volume_vs_24h_ago"] = by_hour["volume_vs_24h_ago"].transform("mean")
    # The largest coin's value (DuckDB's arg_max: among the rows that have one).
    candidates = out[out["rv_6h_vs_p90_168h"].notna() & out["size"].notna()]
    leader = candidates.loc[
        candidates.groupby("partition_hour")["size"].idxmax(), ["partition_hour", "rv_6h_vs_p90_168h"]
    ]
    out["leader_rv_6h_vs_p90_168h"] = out["partition_hour"].map(leader.set_index("partition_hour")["rv_6h_vs_p90_168h"])
    out["ret_1h_rank"] = _percent_rank(out, "ret_1h")
    out["volume_rank"] = _percent_rank(out, "volume_quote")

    angle_hour = 2 * np.pi * out["partition_hour"].dt.hour / 24
    angle_day = 2 * np.pi * out["partition_hour"].dt.dayofweek / 7  # Monday = 0, as isodow - 1
    out["hour_sin"], out["hour_cos"] = np.sin(angle_hour), np.cos(angle_hour)
    out["dow_sin"], out["dow_cos"] = np.sin(angle_day), np.cos(angle_day)

    return out.sort_values(["partition_hour", "coin_id"], ignore_index=True)[OUTPUT_COLUMNS]
