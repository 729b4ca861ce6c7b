"""Features and labels: hand-checked indicator values, no look-ahead, partition-boundary equality,
NULL labels where the horizon is unobserved, the pandas reference, and one run through Dagster.

The SQL runs directly against a temporary DuckDB file with the parameters the assets pass; only
the last test goes through Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from benchmarks.feature_benchmark import compare
from crypto_assets.assets import features, ingestion
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
from crypto_assets.market.schema import SNAPSHOT_COLUMNS, conform
from crypto_assets.market.sources import SyntheticMarket
from crypto_assets.market.synthetic import synthetic_window
from crypto_assets.market.universe import default_universe
from crypto_assets.warehouse import Warehouse, replace_window, transaction
from crypto_assets_tests.features_pandas import pandas_features

from .conftest import range_tags

H = timedelta(hours=1)
T0 = datetime(2026, 3, 2)  # a Monday, midnight; naive UTC like the warehouse
EVERYTHING = (datetime(2000, 1, 1), datetime(2100, 1, 1))
SYNTH_START = datetime(2026, 2, 1)
SYNTH_HOURS = 14 * 24
BOOLEAN_LABELS = {"volatility_spike": "boolean", "direction_up": "boolean"}


def approx(expected: float) -> object:
    return pytest.approx(expected, rel=1e-9, abs=1e-12)


# --- building snapshots and running the SQL -----------------------------------------------------


def coin_rows(
    coin_id: str,
    prices: Sequence[float],
    *,
    hours: Sequence[int] | None = None,
    volumes: Sequence[float] | float = 1e6,
) -> pd.DataFrame:
    """Snapshot rows for one coin: prices[i] at T0 + hours[i] (default: consecutive hours from T0)."""
    hours = list(range(len(prices))) if hours is None else list(hours)
    price = np.asarray(prices, dtype=float)
    at = [T0 + h * H for h in hours]
    return pd.DataFrame(
        {
            "coin_id": coin_id,
            "symbol": coin_id.upper(),
            "observed_at": at,
            "partition_hour": at,
            "price": price,
            "open": price,
            "high": price * 1.02,
            "low": price * 0.99,
            "volume_quote": volumes,
            "source": "synthetic",
            "ingested_at": T0,
        }
    )


def load(warehouse: Warehouse, *frames: pd.DataFrame) -> None:
    """Make ``frames`` the whole content of raw.market_snapshots."""
    rows = conform(pd.concat(frames, ignore_index=True), SNAPSHOT_COLUMNS)
    with warehouse.connect() as conn, transaction(conn):
        replace_window(
            conn, "raw.market_snapshots", rows, column="partition_hour", start=EVERYTHING[0], end=EVERYTHING[1]
        )


def run_features(warehouse: Warehouse, start: datetime, end: datetime) -> pd.DataFrame:
    """coin_features.sql for [start, end), with the parameters the asset passes."""
    params = {"read_start": start - LOOKBACK_HOURS * H, "start": start, "end": end}
    with warehouse.connect() as conn:
        return conn.execute(FEATURES_SQL, params).df()


def run_labels(warehouse: Warehouse, start: datetime, end: datetime) -> pd.DataFrame:
    """coin_labels.sql for [start, end), with the parameters the asset passes; booleans as nullable."""
    params = {
        "read_start": start - (LONGEST_WINDOW_HOURS + LABEL_HORIZON_HOURS) * H,
        "read_end": end + LABEL_HORIZON_HOURS * H,
        "start": start,
        "end": end,
    }
    with warehouse.connect() as conn:
        # DuckDB gives bool when an hour has no NULL and boolean otherwise: one dtype, so frames compare.
        return conn.execute(LABELS_SQL, params).df().astype(BOOLEAN_LABELS)


def hand_features(warehouse: Warehouse, *frames: pd.DataFrame) -> pd.DataFrame:
    """Load ``frames`` and compute features over all their hours, indexed by (coin_id, hours since T0)."""
    load(warehouse, *frames)
    last = max(f["partition_hour"].max() for f in frames)
    out = run_features(warehouse, T0, last + H)
    return out.set_index([out["coin_id"], (out["partition_hour"] - T0) // H]).rename_axis(["coin", "hour"])


def at_hour(frame: pd.DataFrame, hour: datetime) -> pd.DataFrame:
    return frame[frame["partition_hour"] == hour].reset_index(drop=True)


@cache
def _synthetic_market() -> pd.DataFrame:
    start = SYNTH_START.replace(tzinfo=UTC)
    return synthetic_window(default_universe(4), 7, start, start + SYNTH_HOURS * H, 0.01).snapshots


def synthetic_with_gaps() -> pd.DataFrame:
    """14 days x 4 coins of synthetic snapshots, with every coin missing hours 100-102 and one coin 150-159."""
    snaps = _synthetic_market().copy()
    age = (snaps["partition_hour"] - SYNTH_START) // H
    dropped = age.between(100, 102) | ((snaps["coin_id"] == "ethereum") & age.between(150, 159))
    return snaps[~dropped].reset_index(drop=True)


def synth_hour(age: int) -> datetime:
    return SYNTH_START + age * H


SYNTH_END = synth_hour(SYNTH_HOURS)


# --- hand-checked indicators ---------------------------------------------------------------------


def test_returns_volatility_and_rsi_on_a_geometric_series(warehouse):
    f = hand_features(warehouse, coin_rows("a", 100 * 1.01 ** np.arange(80))).loc["a"]
    step = math.log(1.01)
    assert math.isnan(f.at[0, "ret_1h"]) and f.at[0, "rsi_14"] == 50  # no change seen yet
    assert math.isnan(f.at[3, "ret_4h"]) and f.at[4, "ret_4h"] == approx(4 * step)
    assert math.isnan(f.at[23, "ret_24h"]) and f.at[24, "ret_24h"] == approx(24 * step)
    assert math.isnan(f.at[1, "ret_zscore_24h"])  # no return before the first one
    for t in (1, 2, 30, 79):
        assert f.at[t, "ret_1h"] == approx(step)
        for column in ("rv_6h", "rv_24h", "rv_72h"):
            assert f.at[t, column] == approx(step)
        assert f.at[t, "rv_ratio_6h_72h"] == approx(1.0)
        assert f.at[t, "rv_6h_vs_p90_168h"] == approx(1.0)
        assert f.at[t, "rsi_14"] == 100  # all gains
    assert f.at[2, "ret_zscore_24h"] == approx(1.0)
    assert f.at[12, "roc_12h"] == approx(100 * (1.01**12 - 1))
    assert math.isnan(f.at[11, "roc_12h"])


def test_realized_volatility_windows_and_return_zscore_follow_a_volatility_change(warehouse):
    # Hourly log returns alternate +-1% for 48 hours, then +-3%.
    n = 130
    returns = np.where(np.arange(n) <= 48, 0.01, 0.03) * np.where(np.arange(n) % 2 == 0, 1, -1)
    returns[0] = np.nan  # the first hour has no return
    f = hand_features(warehouse, coin_rows("a", 100 * np.exp(np.nancumsum(returns)))).loc["a"]

    def rms(first: int, last: int) -> float:  # over the returns of hours first..last
        return float(np.sqrt(np.nanmean(returns[max(first, 0) : last + 1] ** 2)))

    rv_6h = np.array([np.nan] + [rms(t - 5, t) for t in range(1, n)])
    for t in (5, 50, 52, 60, 100, 129):
        assert f.at[t, "ret_1h"] == approx(returns[t])
        assert f.at[t, "rv_6h"] == approx(rms(t - 5, t))
        assert f.at[t, "rv_24h"] == approx(rms(t - 23, t))
        assert f.at[t, "rv_72h"] == approx(rms(t - 71, t))
        assert f.at[t, "rv_ratio_6h_72h"] == approx(rms(t - 5, t) / rms(t - 71, t))
        assert f.at[t, "ret_zscore_24h"] == approx(returns[t] / rms(t - 24, t - 1))
        p90 = np.nanquantile(rv_6h[max(t - 167, 0) : t + 1], 0.9)  # numpy's default is linear, as quantile_cont
        assert f.at[t, "rv_6h_vs_p90_168h"] == approx(rv_6h[t] / p90)


def test_rsi_uses_simple_sums_of_the_last_14_changes(warehouse):
    changes = np.tile([2.0, -1.0], 20)
    both = hand_features(
        warehouse,
        coin_rows("a", 100 + np.concatenate([[0.0], np.cumsum(changes)])),
        coin_rows("flat", np.full(40, 50.0)),
    )
    f, flat = both.loc["a"], both.loc["flat"]
    assert f.at[1, "rsi_14"] == approx(100.0)  # one gain
    assert f.at[2, "rsi_14"] == approx(100 * 2 / 3)
    assert f.at[3, "rsi_14"] == approx(100 * 4 / 5)
    for t in (14, 15, 30, 40):  # 7 gains of 2 and 7 losses of 1
        assert f.at[t, "rsi_14"] == approx(100 * 14 / 21)
    assert (flat["rsi_14"] == 50).all()
    # a flat price has zero volatility and deviation: ratios over them are NULL, never infinite
    assert (flat.loc[1:, "rv_6h"] == 0).all() and flat["rv_ratio_6h_72h"].isna().all()
    assert flat["bb_pct_b"].isna().all() and (flat["bb_bandwidth"] == 0).all()


def test_hours_that_traded_nothing_give_finite_features_and_the_detectors_train(warehouse):
    """Thin markets: hours with volume 0 and an unchanged price (real exports are full of them)."""
    from crypto_assets.ml.anomaly_detector import AnomalyDetector
    from crypto_assets.ml.families import MODEL_FAMILIES

    n = 10 * 24
    rng = np.random.default_rng(3)
    walk = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    dead = np.where(np.arange(n) % 5 == 0, walk, np.nan)
    dead = pd.Series(dead).ffill().bfill().to_numpy()  # price moves one hour in five, else unchanged
    dead_volume = np.where(np.arange(n) % 5 == 0, 5e4, 0.0)
    all_zero = coin_rows("zero", np.full(n, 3.0), volumes=0.0)  # never trades at all
    frame = hand_features(warehouse, coin_rows("live", walk), coin_rows("dead", dead, volumes=dead_volume), all_zero)
    feature_columns = sorted({name for family in MODEL_FAMILIES for name in family.features})
    values = frame[feature_columns].to_numpy(dtype=float)
    assert not np.isinf(values).any(), [c for c in feature_columns if np.isinf(frame[c].astype(float)).any()]
    # Volume features say "nothing traded" as numbers, not as gaps, wherever their window is full.
    assert (frame.loc["zero"].loc[24:, "volume_vs_24h_ago"] == 0).all()
    assert (frame.loc["zero"].loc[168:, "volume_vs_median_168h"] == 0).all()

    train = frame.reset_index(drop=True).assign(is_anomaly=False)
    detector = AnomalyDetector().fit(train, {})
    scores = detector.scores(train)
    assert np.isfinite(scores).all() and len(scores) == len(train)
    model_input = detector.matrix(train)
    assert not np.isinf(model_input).any()


def _truncated_ema(hours: Sequence[int], values: Sequence[float], span: int) -> np.ndarray:
    """Independent loop: sum(w^age * x) / sum(w^age) over the rows aged 0..4*span-1 hours."""
    w = 1 - 2 / (span + 1)
    out = []
    for i, now in enumerate(hours):
        num = den = 0.0
        for then, value in zip(hours[: i + 1], values[: i + 1], strict=True):
            if now - then < 4 * span:
                num += w ** (now - then) * value
                den += w ** (now - then)
        out.append(num / den)
    return np.array(out)


def test_macd_matches_an_independent_loop_over_truncated_weights_across_a_gap(warehouse):
    hours = [h for h in range(160) if not 60 <= h <= 64]
    prices = [100 + 10 * math.sin(h / 7) + 0.2 * h for h in hours]
    f = hand_features(warehouse, coin_rows("a", prices, hours=hours)).loc["a"]
    ema_12 = _truncated_ema(hours, prices, 12)
    ema_26 = _truncated_ema(hours, prices, 26)
    macd = (ema_12 - ema_26) / np.array(prices)
    signal = _truncated_ema(hours, macd, 9)
    assert list(f.index) == hours
    for column, expected in {
        "macd_line": macd,
        "macd_signal": signal,
        "macd_hist": macd - signal,
        "ema_12_26_ratio": ema_12 / ema_26,
    }.items():
        assert f[column].tolist() == [approx(v) for v in expected], column


def test_bollinger_moving_average_momentum_and_roc_on_a_linear_series(warehouse):
    f = hand_features(warehouse, coin_rows("a", 100.0 + np.arange(120))).loc["a"]

    def lag(span: int, t: int) -> float:  # how far a truncated EMA of a unit-slope line trails it
        ages = np.arange(min(4 * span - 1, t) + 1)
        weights = (1 - 2 / (span + 1)) ** ages
        return float((weights * ages).sum() / weights.sum())

    # partial window at t=4: prices 100..104
    assert f.at[4, "bb_bandwidth"] == approx(4 * math.sqrt(2) / 102)
    for t in (19, 30, 110):
        price, sd = 100.0 + t, math.sqrt((20**2 - 1) / 12)  # population sd of 20 consecutive integers
        assert f.at[t, "bb_pct_b"] == approx((9.5 + 2 * sd) / (4 * sd))
        assert f.at[t, "bb_bandwidth"] == approx(4 * sd / (price - 9.5))
    for t in (23, 30, 110):
        price = 100.0 + t
        assert f.at[t, "price_sma_24_ratio"] == approx(price / (price - 11.5))
        assert f.at[t, "momentum_12h"] == approx(12 / (price - 11.5))
        assert f.at[t, "roc_12h"] == approx(1200 / (price - 12))
        assert f.at[t, "ema_12_26_ratio"] == approx((price - lag(12, t)) / (price - lag(26, t)))


def test_volume_zscores_and_high_low_range(warehouse):
    log_volume = np.where(np.arange(200) % 2 == 0, 10.0, 12.0)
    f = hand_features(warehouse, coin_rows("a", np.full(200, 100.0), volumes=np.exp(log_volume))).loc["a"]
    assert f["volume_zscore_24h"].iloc[:2].isna().all()  # fewer than two earlier hours: no deviation
    assert f.at[2, "volume_zscore_24h"] == approx(-1 / math.sqrt(2))  # mean 11 and sd sqrt(2) of (10, 12)
    for t in (24, 25, 100, 199):
        sign = 1 if log_volume[t] == 12 else -1
        assert f.at[t, "volume_zscore_24h"] == approx(sign * math.sqrt(23 / 24))  # 12 of each value before
    assert f.at[100, "volume_zscore_168h"] == approx(-math.sqrt(99 / 100))  # 100 hours of history so far
    assert f.at[199, "volume_zscore_168h"] == approx(math.sqrt(167 / 168))
    assert f["hl_range"].tolist() == [approx(0.03)] * 200  # high 2% above, low 1% below the price


def test_cross_sectional_median_difference_and_percent_ranks(warehouse):
    f = hand_features(
        warehouse,
        coin_rows("a", [100, 101, 101], volumes=[1, 300, 5]),
        coin_rows("b", [100, 98, 98 * 1.02], volumes=[1, 100, 5]),
        coin_rows("c", [100, 103, 103 * 0.99], volumes=[1, 200, 5]),
        coin_rows("d", [50, 50 * 1.04], hours=[1, 2], volumes=[200, 5]),  # new at hour 1: no return yet
    )
    hour_0, hour_1, hour_2 = (f.xs(hour, level="hour") for hour in range(3))
    median = math.log(1.01)
    assert hour_1["ret_1h_vs_market"].drop("d").to_dict() == {
        "a": approx(0.0),
        "b": approx(math.log(0.98) - median),
        "c": approx(math.log(1.03) - median),
    }
    assert hour_1["ret_1h_rank"].drop("d").to_dict() == {"a": 0.5, "b": 0.0, "c": 1.0}
    assert hour_1.loc["d", ["ret_1h_vs_market", "ret_1h_rank"]].isna().all()  # no return: no rank, not counted
    assert hour_1["volume_rank"].to_dict() == {
        "a": 1.0,
        "b": 0.0,
        "c": approx(1 / 3),
        "d": approx(1 / 3),
    }  # tie: lower rank
    # four returns: the median is the mean of the middle two
    assert hour_2.at["a", "ret_1h_vs_market"] == approx(-math.log(1.02) / 2)
    assert (hour_2["volume_rank"] == 0).all()  # all tied
    assert hour_0[["ret_1h_vs_market", "ret_1h_rank"]].isna().all().all()  # nobody has a return at hour 0


@pytest.mark.parametrize(
    ("hour", "hour_angle", "weekday"),
    [(0, 0.0, 0), (6, math.pi / 2, 0), (3 * 24 + 12, math.pi, 3), (6 * 24 + 18, 3 * math.pi / 2, 6)],
    ids=["monday-00h", "monday-06h", "thursday-12h", "sunday-18h"],
)
def test_cyclic_calendar_encodings(warehouse, hour, hour_angle, weekday):
    row = hand_features(warehouse, coin_rows("a", [100.0], hours=[hour])).loc[("a", hour)]
    day_angle = 2 * math.pi * weekday / 7
    assert (row["hour_sin"], row["hour_cos"]) == (approx(math.sin(hour_angle)), approx(math.cos(hour_angle)))
    assert (row["dow_sin"], row["dow_cos"]) == (approx(math.sin(day_angle)), approx(math.cos(day_angle)))


def test_missing_hours_and_warmup_flags(warehouse):
    hours = [h for h in range(230) if not 30 <= h <= 34]
    late = list(range(50, 230))  # a coin listed 50 hours later
    computed = hand_features(
        warehouse,
        coin_rows("a", np.full(len(hours), 100.0), hours=hours),
        coin_rows("late", np.full(len(late), 100.0), hours=late),
    )
    f, late_rows = computed.loc["a"], computed.loc["late"]
    assert {t: f.at[t, "missing_hours_24h"] for t in (0, 10, 24, 29, 35, 58, 59)} == {
        0: 24,
        10: 14,
        24: 0,
        29: 0,
        35: 5,
        58: 1,
        59: 0,
    }
    assert math.isnan(f.at[35, "ret_1h"]) and not math.isnan(f.at[36, "ret_1h"])  # no row an hour before
    assert not math.isnan(f.at[35, "ret_24h"])
    assert f.loc[:167, "in_warmup"].all() and not f.loc[168:, "in_warmup"].any()
    assert late_rows.loc[:217, "in_warmup"].all() and not late_rows.loc[218:, "in_warmup"].any()


# --- columns, the pandas reference ---------------------------------------------------------------


def test_output_columns_match_the_spec(warehouse):
    load(warehouse, synthetic_with_gaps())
    feature_columns = [name for name, _, _ in feature_table_columns() if name != "feature_spec_version"]
    assert list(run_features(warehouse, synth_hour(200), synth_hour(202)).columns) == feature_columns
    assert list(run_labels(warehouse, synth_hour(200), synth_hour(202)).columns) == [
        name for name, _, _ in LABEL_COLUMNS
    ]


def test_pandas_reference_agrees_with_the_sql(warehouse):
    snaps = synthetic_with_gaps()
    load(warehouse, snaps)
    start, end = synth_hour(150), SYNTH_END  # the lookback reaches back to the first rows
    agreement = compare(run_features(warehouse, start, end), pandas_features(snaps, start, end))
    assert agreement["mismatches"].sum() == 0, agreement[agreement["mismatches"] > 0]


# --- no look-ahead -------------------------------------------------------------------------------


def _changed_after(snaps: pd.DataFrame, hour: datetime) -> pd.DataFrame:
    """Prices, highs, lows and volumes changed after ``hour``, and a few rows after it removed."""
    later = snaps["partition_hour"] > hour
    changed = snaps.copy()
    changed.loc[later, ["price", "high", "low"]] *= 1.3
    changed.loc[later, "volume_quote"] *= 5
    return changed.drop(changed.index[later][::7])


def test_features_do_not_look_ahead(warehouse):
    snaps, t = synthetic_with_gaps(), synth_hour(240)
    load(warehouse, snaps)
    before = run_features(warehouse, SYNTH_START, SYNTH_END)
    load(warehouse, _changed_after(snaps, t))
    after = run_features(warehouse, SYNTH_START, SYNTH_END)
    upto = before["partition_hour"] <= t
    # to rounding: cross-sectional means add the coins in any order
    pd.testing.assert_frame_equal(
        before[upto], after[after["partition_hour"] <= t], check_exact=False, rtol=1e-12, atol=1e-15
    )
    assert not before[~upto].reset_index(drop=True).equals(after[after["partition_hour"] > t].reset_index(drop=True))


def test_labels_see_only_their_horizon_and_the_threshold_only_the_past(warehouse):
    snaps, t = synthetic_with_gaps(), synth_hour(240)
    horizon_end = t + LABEL_HORIZON_HOURS * H
    load(warehouse, snaps)
    before = run_labels(warehouse, SYNTH_START, SYNTH_END)

    def labels_at_or_before(frame: pd.DataFrame, hour: datetime) -> pd.DataFrame:
        return frame[frame["partition_hour"] <= hour].reset_index(drop=True)

    # rows beyond the horizon change nothing at or before t
    load(warehouse, _changed_after(snaps, horizon_end))
    beyond = run_labels(warehouse, SYNTH_START, SYNTH_END)
    pd.testing.assert_frame_equal(labels_at_or_before(before, t), labels_at_or_before(beyond, t), check_exact=True)

    # the last hour of the horizon moves t's forward return and volatility
    last_hour = (snaps["partition_hour"] == horizon_end) & (snaps["coin_id"] == "bitcoin")
    load(warehouse, snaps.assign(price=snaps["price"].where(~last_hour, snaps["price"] * 1.05)))
    moved = run_labels(warehouse, SYNTH_START, SYNTH_END).set_index(["partition_hour", "coin_id"])
    original = before.set_index(["partition_hour", "coin_id"])
    assert moved.at[(t, "bitcoin"), "fwd_return_6h"] == approx(
        original.at[(t, "bitcoin"), "fwd_return_6h"] + math.log(1.05)
    )
    assert moved.at[(t, "bitcoin"), "fwd_vol_6h"] != original.at[(t, "bitcoin"), "fwd_vol_6h"]

    # the spike threshold at t and before is built from the past only
    load(warehouse, _changed_after(snaps, t))
    changed = run_labels(warehouse, SYNTH_START, SYNTH_END)
    pd.testing.assert_series_equal(
        labels_at_or_before(before, t)["vol_threshold"],
        labels_at_or_before(changed, t)["vol_threshold"],
        check_exact=True,
    )
    assert not labels_at_or_before(before, t)["fwd_vol_6h"].equals(labels_at_or_before(changed, t)["fwd_vol_6h"])


def test_labels_stay_null_until_their_horizon_is_observed(warehouse):
    snaps = synthetic_with_gaps()
    t = synth_hour(250)
    hole = (snaps["partition_hour"] == t + 3 * H) & (snaps["coin_id"] == "bitcoin")
    load(warehouse, snaps[~hole])
    labels = run_labels(warehouse, SYNTH_START, SYNTH_END).set_index(["partition_hour", "coin_id"])
    forward = ["fwd_vol_6h", "volatility_spike", "fwd_return_6h", "direction_up"]
    tail = labels.loc[synth_hour(SYNTH_HOURS - LABEL_HORIZON_HOURS) :]
    assert (
        len(tail) == 4 * LABEL_HORIZON_HOURS and tail[forward].isna().all().all()
    )  # the data ends within their horizon
    assert labels.loc[synth_hour(SYNTH_HOURS - LABEL_HORIZON_HOURS - 1)].notna().all().all()
    # a missing hour inside the horizon leaves the volatility unknown; the 6h-ahead price is still there
    assert labels.loc[(t, "bitcoin"), ["fwd_vol_6h", "volatility_spike"]].isna().all()
    assert not math.isnan(labels.at[(t, "bitcoin"), "fwd_return_6h"])
    # the threshold needs 48 hours of trailing volatility
    support = labels["vol_threshold"].notna().groupby(level="partition_hour").all()
    assert not support.loc[: synth_hour(47)].any() and support.loc[synth_hour(48) : synth_hour(99)].all()


# --- partition boundaries ------------------------------------------------------------------------

BOUNDARY_HOURS = [0, 99, 103, 104, 150, 160, 161, 200, 201, 300, SYNTH_HOURS - 1]  # gaps: 100-102 all, 150-159 one coin


def test_one_hour_runs_equal_a_long_run(warehouse):
    """Within 1e-9: native windowed sums may add the same values in another order in a longer run."""
    same = {"check_exact": False, "rtol": 1e-9, "atol": 1e-12}
    load(warehouse, synthetic_with_gaps())
    long_features = run_features(warehouse, SYNTH_START, SYNTH_END)
    long_labels = run_labels(warehouse, SYNTH_START, SYNTH_END)
    for age in BOUNDARY_HOURS:
        hour = synth_hour(age)
        pd.testing.assert_frame_equal(run_features(warehouse, hour, hour + H), at_hour(long_features, hour), **same)
        pd.testing.assert_frame_equal(run_labels(warehouse, hour, hour + H), at_hour(long_labels, hour), **same)
    # and a run over a whole day
    in_day = long_features["partition_hour"].between(synth_hour(216), synth_hour(239))
    day = run_features(warehouse, synth_hour(216), synth_hour(240))
    pd.testing.assert_frame_equal(day, long_features[in_day].reset_index(drop=True), **same)


# --- through Dagster ----------------------------------------------------------------------------


def test_snapshots_features_and_labels_materialize_with_passing_checks(warehouse, instance):
    result = dg.materialize(
        [ingestion.market_snapshots, features.coin_features, features.coin_labels],
        instance=instance,
        resources={"warehouse": warehouse, "market_source": SyntheticMarket()},
        # one day in a single run: Dagster still writes events for each hour, which is what takes the time
        tags=range_tags("2026-03-01", "2026-03-01"),
        raise_on_error=False,
    )
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert {features.FEATURES_SCHEMA_CHECK, features.FEATURES_COMPLETE_CHECK, features.LABELS_NO_LEAK_CHECK} <= set(
        checks
    )
    assert all(checks.values()), checks
    versions = {
        e.materialization.metadata["feature_spec_version"].value
        for e in result.get_asset_materialization_events()
        if e.asset_key == features.FEATURES_KEY
    }
    assert versions == {FEATURE_SPEC_VERSION}
    stored = warehouse.query("SELECT DISTINCT feature_spec_version FROM features.coin_features")
    assert stored["feature_spec_version"].tolist() == [FEATURE_SPEC_VERSION]
    counts = warehouse.query(
        "SELECT (SELECT count(*) FROM raw.market_snapshots) AS snapshots,"
        " (SELECT count(*) FROM features.coin_features) AS features,"
        " (SELECT count(*) FROM features.coin_labels) AS labels"
    ).iloc[0]
    assert counts.to_dict() == {"snapshots": 24 * 20, "features": 24 * 20, "labels": 24 * 20}


def test_features_and_labels_of_days_without_snapshots_fail_a_blocking_check_naming_the_days(warehouse, instance):
    resources = {"warehouse": warehouse, "market_source": SyntheticMarket()}
    landed = dg.materialize([ingestion.market_snapshots], instance=instance, resources=resources,
                            partition_key="2026-03-01")  # fmt: skip
    assert landed.success
    result = dg.materialize(
        [features.coin_features, features.coin_labels],
        instance=instance,
        resources=resources,
        selection=[features.FEATURES_KEY, features.LABELS_KEY],
        tags=range_tags("2026-03-01", "2026-03-02"),  # snapshots of the second day never landed
        raise_on_error=False,
    )

    assert not result.success  # blocking: nothing downstream reads the empty day as data
    present = [e for e in result.get_asset_check_evaluations() if e.check_name == features.SNAPSHOTS_PRESENT_CHECK]
    assert {e.asset_key for e in present} == {features.FEATURES_KEY, features.LABELS_KEY}
    for check in present:
        assert not check.passed
        assert check.description.startswith("no market_snapshots on 1 day(s) whose hours have ended: 2026-03-02")
        assert check.metadata["days_without_snapshots"].value == 1


def test_a_range_computed_in_pieces_equals_the_range_computed_whole(warehouse, instance, monkeypatch):
    # Long backfills compute features FEATURE_CHUNK_DAYS at a time, to bound memory.
    load(warehouse, synthetic_with_gaps())
    first, last = synth_hour(10 * 24), synth_hour(13 * 24)  # 3 days, after the warm-up
    monkeypatch.setattr(features, "FEATURE_CHUNK_DAYS", 1)
    result = dg.materialize(
        [features.coin_features],
        instance=instance,
        resources={"warehouse": warehouse},
        tags=range_tags(f"{first:%Y-%m-%d}", f"{last - H:%Y-%m-%d}"),
        raise_on_error=False,
    )
    assert result.success
    pieces = warehouse.query(
        "SELECT * EXCLUDE (feature_spec_version) FROM features.coin_features ORDER BY partition_hour, coin_id"
    )
    whole = run_features(warehouse, first, last).sort_values(["partition_hour", "coin_id"], ignore_index=True)
    assert len(pieces) == len(whole) > 0
    pd.testing.assert_frame_equal(pieces[whole.columns.tolist()], whole, check_dtype=False, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bad", ["'inf'::DOUBLE", "'nan'::DOUBLE"])
def test_a_non_finite_feature_fails_the_blocking_check_naming_it(warehouse, instance, monkeypatch, bad):
    load(warehouse, synthetic_with_gaps())
    spoiled = (
        f"SELECT * REPLACE (CASE WHEN coin_id = 'bitcoin' THEN {bad} ELSE rv_6h END AS rv_6h) "
        f"FROM ({features.FEATURES_SQL})"
    )
    monkeypatch.setattr(features, "FEATURES_SQL", spoiled)
    day = f"{synth_hour(10 * 24):%Y-%m-%d}"
    result = dg.materialize(
        [features.coin_features],
        instance=instance,
        resources={"warehouse": warehouse},
        partition_key=day,
        raise_on_error=False,
    )
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == features.FEATURES_FINITE_CHECK]
    assert not check.passed
    assert check.metadata["by_feature"].value == "rv_6h: 24" and check.metadata["non_finite_values"].value == 24
    assert not result.success  # blocking
