"""Per-coin drift: the CUSUM is quiet on a stable market, fires on a shift of a few coins within a day,
and shrugs off single jumps."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from crypto_assets.market.synthetic import RegimeShift, synthetic_window
from crypto_assets.market.universe import default_universe
from crypto_assets.ml.coin_drift import MARKET, CusumSettings, coin_drift, coins_drifted

COINS = default_universe(20)
SHIFTED = [c.coin_id for c in COINS[:5]]  # a regime shift hits the first coins in universe order
FIRST = datetime(2026, 10, 1, tzinfo=UTC)
SHIFT_DAY = FIRST + timedelta(days=20)


def returns(shift: RegimeShift | None) -> pd.DataFrame:
    batch = synthetic_window(COINS, 7, FIRST - timedelta(days=22), SHIFT_DAY + timedelta(days=3), 0.02, shift)
    frame = batch.snapshots.sort_values(["coin_id", "observed_at"])
    frame["ret_1h"] = np.log(frame["price"]).groupby(frame["coin_id"]).diff()
    return frame[["coin_id", "partition_hour", "ret_1h"]]


def judge(frame: pd.DataFrame, day: datetime, settings: CusumSettings | None = None) -> pd.DataFrame:
    end = pd.Timestamp(day.replace(tzinfo=None)) + pd.Timedelta(days=1)
    monitored, reference = end - pd.Timedelta(days=7), end - pd.Timedelta(days=21)
    hours = frame["partition_hour"]
    return coin_drift(
        frame[(hours >= reference) & (hours < monitored)],
        frame[(hours >= monitored) & (hours < end)],
        settings or CusumSettings(),
    )


@pytest.fixture(scope="module")
def stable() -> pd.DataFrame:
    return returns(None)


def test_quiet_on_the_stable_market(stable):
    needed = CusumSettings().min_coins
    drifted = [len(coins_drifted(judge(stable, FIRST + timedelta(days=i)))) for i in range(20)]
    assert sum(n >= needed for n in drifted) <= 1
    assert sum(drifted) <= 10  # single coins past h happen (that is why one coin raises no alarm), but rarely
    result = judge(stable, SHIFT_DAY)
    assert set(result["coin_id"]) == {c.coin_id for c in COINS} | {MARKET}
    assert (result.loc[result["coin_id"] != MARKET, "reference_beta"] > 0.1).all()


def test_names_the_shifted_coins_on_the_first_day_and_alarms_by_the_second(stable):
    shifted = returns(RegimeShift(SHIFT_DAY, 5, 2.0))
    result = judge(shifted, SHIFT_DAY)
    drifted = coins_drifted(result)
    assert len(drifted) >= 2 and set(drifted) <= set(SHIFTED)  # day 1: only shifted coins (2 here, 3 alarm)
    later = coins_drifted(judge(shifted, SHIFT_DAY + timedelta(days=1)))
    assert len(later) >= CusumSettings().min_coins and set(later) <= set(SHIFTED)
    by_coin = result.set_index("coin_id")
    # today's x of the shifted coins is near log 2; the others' a little below 0 (the shifted coins move the
    # market median a little with them)
    others = by_coin.drop(index=[*SHIFTED, MARKET])["x"].median()
    assert by_coin.loc[SHIFTED, "x"].median() > 0.3 and -0.3 < others < 0.1
    # each of the two estimates sees the shift on its own
    assert by_coin.loc[SHIFTED, "beta_x"].median() > 0.3 and by_coin.loc[SHIFTED, "level_x"].median() > 0.3
    # the same day on the stable market: nothing
    assert len(coins_drifted(judge(stable, SHIFT_DAY))) < 2


def test_a_single_crash_or_a_frozen_feed_does_not_fire(stable):
    day = FIRST + timedelta(days=5)
    hurt = stable.copy()
    coin = hurt["coin_id"] == "cardano"
    hour = pd.Timestamp(day.replace(tzinfo=None)) + pd.Timedelta(hours=12)
    hurt.loc[coin & (hurt["partition_hour"] == hour), "ret_1h"] = -0.35  # a flash crash ...
    hurt.loc[coin & (hurt["partition_hour"] == hour + pd.Timedelta(hours=1)), "ret_1h"] = 0.3  # ... and rebound
    frozen = coin & (hurt["partition_hour"] > hour + pd.Timedelta(hours=1))
    hurt.loc[frozen & (hurt["partition_hour"] < hour + pd.Timedelta(hours=10)), "ret_1h"] = 0.0  # then a stale feed
    before = judge(stable, day).set_index("coin_id").loc["cardano"]
    after = judge(hurt, day).set_index("coin_id").loc["cardano"]
    assert not after["drifted"]
    assert after["cusum"] <= before["cusum"] + CusumSettings().threshold / 2


def test_cusum_accumulates_moderate_days_and_forgets_small_ones():
    hours = pd.date_range("2026-01-01", periods=24 * 24, freq="h")
    rng = np.random.default_rng(0)
    market = rng.normal(0, 0.01, len(hours))
    frames = []
    for name in ["a", "b", "c", "d"]:
        factor = np.where((name == "a") & (hours >= pd.Timestamp("2026-01-19")), 1.6, 1.0)  # 1.6x from day 19
        ret = factor * (market + rng.normal(0, 0.003, len(hours)))
        frames.append(pd.DataFrame({"coin_id": name, "partition_hour": hours, "ret_1h": ret}))
    frame = pd.concat(frames)
    cut = pd.Timestamp("2026-01-18")
    ref, mon = frame[frame["partition_hour"] < cut], frame[frame["partition_hour"] >= cut]
    by_day = {}
    for last in range(1, 7):
        end = cut + pd.Timedelta(days=last)
        by_day[last] = coin_drift(ref, mon[mon["partition_hour"] < end]).set_index("coin_id").loc["a"]
    assert by_day[1]["cusum"] == 0  # before the change
    assert not by_day[2]["drifted"]  # one day at 1.6x (x = 0.47 - k = 0.27 < h) is not enough ...
    assert by_day[3]["drifted"]  # ... two are
    assert by_day[3]["cusum"] > by_day[2]["cusum"] > 0
