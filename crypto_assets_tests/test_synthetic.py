from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from crypto_assets.market.anomalies import ANOMALY_KINDS, inject_anomalies
from crypto_assets.market.schema import SNAPSHOT_COLUMN_NAMES
from crypto_assets.market.synthetic import synthetic_window
from crypto_assets.market.universe import default_universe

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_same_hour_and_seed_give_identical_rows_whatever_the_window():
    long = synthetic_window(default_universe(20), 7, T0, T0 + timedelta(days=3), 0.01)
    hour = T0 + timedelta(days=2, hours=5)
    short = synthetic_window(default_universe(5), 7, hour, hour + timedelta(hours=1), 0.01)
    merged = long.snapshots.merge(short.snapshots, on=["coin_id", "observed_at"], suffixes=("_l", "_s"))
    assert len(merged) == 5
    for column in ("price", "open", "high", "low", "volume_quote", "market_cap"):
        assert (merged[f"{column}_l"] == merged[f"{column}_s"]).all(), column
    again = synthetic_window(default_universe(5), 7, hour, hour + timedelta(hours=1), 0.01)
    pd.testing.assert_frame_equal(
        short.snapshots.drop(columns="ingested_at"), again.snapshots.drop(columns="ingested_at")
    )


def test_different_seed_gives_different_market():
    a = synthetic_window(default_universe(3), 1, T0, T0 + timedelta(hours=2), 0.0)
    b = synthetic_window(default_universe(3), 2, T0, T0 + timedelta(hours=2), 0.0)
    assert not np.allclose(a.snapshots["price"], b.snapshots["price"])


def test_shape_schema_and_candles_are_consistent():
    batch = synthetic_window(default_universe(20), 7, T0, T0 + timedelta(days=7), 0.01)
    snaps = batch.snapshots
    assert list(snaps.columns) == SNAPSHOT_COLUMN_NAMES
    assert len(snaps) == 20 * 7 * 24
    assert not snaps.duplicated(["coin_id", "observed_at"]).any()
    assert (snaps["price"] > 0).all()
    assert (snaps["high"] >= snaps[["open", "price"]].max(axis=1) - 1e-9).all()
    assert (snaps["low"] <= snaps[["open", "price"]].min(axis=1) + 1e-9).all()
    btc = snaps[snaps["coin_id"] == "bitcoin"]["price"]
    assert 20_000 < btc.median() < 200_000  # realistic scale around the base level


def test_volatility_clusters_and_volume_has_a_daily_cycle():
    batch = synthetic_window(default_universe(5), 7, T0, T0 + timedelta(days=120), 0.0)
    btc = batch.snapshots[batch.snapshots["coin_id"] == "bitcoin"].sort_values("observed_at")
    abs_ret = np.abs(np.diff(np.log(btc["price"].to_numpy())))
    # volatility clustering: absolute returns are autocorrelated
    assert np.corrcoef(abs_ret[:-1], abs_ret[1:])[0, 1] > 0.1
    by_hour = btc.groupby(btc["observed_at"].dt.hour)["volume_quote"].median()
    assert by_hour.max() / by_hour.min() > 1.5


def test_anomalies_are_labeled_at_about_the_configured_rate_and_never_in_snapshots():
    batch = synthetic_window(default_universe(20), 7, T0, T0 + timedelta(days=60), 0.01)
    rate = len(batch.ground_truth) / len(batch.snapshots)
    assert 0.006 < rate < 0.016
    assert set(batch.ground_truth["anomaly_kind"]) == set(ANOMALY_KINDS)
    assert "anomaly_kind" not in batch.snapshots.columns
    zero = synthetic_window(default_universe(20), 7, T0, T0 + timedelta(days=2), 0.0)
    assert zero.ground_truth.empty


def test_injected_anomalies_move_prices_and_volumes_as_labeled():
    base = synthetic_window(default_universe(20), 7, T0, T0 + timedelta(days=30), 0.0).snapshots
    altered = synthetic_window(default_universe(20), 7, T0, T0 + timedelta(days=30), 0.02)
    merged = altered.snapshots.merge(base, on=["coin_id", "observed_at"], suffixes=("", "_base"))
    labeled = merged.merge(
        altered.ground_truth[["coin_id", "observed_at", "anomaly_kind"]], on=["coin_id", "observed_at"], how="left"
    )
    unlabeled = labeled[labeled["anomaly_kind"].isna()]
    assert (unlabeled["price"] == unlabeled["price_base"]).all()
    assert (unlabeled["volume_quote"] == unlabeled["volume_quote_base"]).all()
    spikes = labeled[labeled["anomaly_kind"] == "volume_spike"]
    assert (spikes["volume_quote"] >= 8 * spikes["volume_quote_base"] - 1e-6).all()
    assert (spikes["price"] == spikes["price_base"]).all()
    pumps = labeled[labeled["anomaly_kind"] == "pump_and_dump"]
    assert (pumps["price"] >= pumps["price_base"]).all() and (pumps["price"] > pumps["price_base"] * 1.1).any()
    crashes = labeled[labeled["anomaly_kind"] == "flash_crash"]
    assert (crashes["price"] < crashes["price_base"]).all()


def test_injection_is_deterministic_on_replayed_data_and_independent_of_the_window():
    hours = pd.date_range("2021-01-01", periods=24 * 40, freq="h")
    frame = pd.DataFrame(
        {
            "coin_id": "bitcoin",
            "symbol": "BTC",
            "observed_at": hours,
            "price": 30_000.0,
            "open": 30_000.0,
            "high": 30_100.0,
            "low": 29_900.0,
            "volume_quote": 1e6,
        }
    )
    full, truth_full = inject_anomalies(frame, seed=3, rate=0.02, source="csv")
    part, truth_part = inject_anomalies(frame.iloc[24 * 10 :], seed=3, rate=0.02, source="csv")
    assert len(truth_full) > 0
    later = truth_full[truth_full["observed_at"] >= hours[24 * 10 + 6]]
    assert set(map(tuple, later[["observed_at", "anomaly_kind"]].values)) <= set(
        map(tuple, truth_part[["observed_at", "anomaly_kind"]].values)
    )


def test_windows_before_the_simulator_epoch_or_off_the_hour_are_refused():
    with pytest.raises(ValueError, match="starts at"):
        synthetic_window(
            default_universe(2),
            7,
            datetime(2019, 1, 1, tzinfo=UTC),
            datetime(2019, 1, 2, tzinfo=UTC),
            0.0,
        )
    with pytest.raises(ValueError, match="on the hour"):
        synthetic_window(default_universe(2), 7, T0 + timedelta(minutes=5), T0 + timedelta(hours=2), 0.0)
    with pytest.raises(ValueError, match="anomaly_rate"):
        synthetic_window(default_universe(2), 7, T0, T0 + timedelta(hours=2), 0.7)
