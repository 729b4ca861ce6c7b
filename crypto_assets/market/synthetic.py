"""A deterministic, offline market simulator: the default market source.

Every coin follows its own random stream, seeded by (seed, coin id), simulated hour by hour
from ``SIM_EPOCH``; a window is a slice of that one path, so the same hour and seed always give
identical rows, whichever window or universe asked for it. The model:

- a common market factor and per-coin moves, each with stochastic (AR(1) log-) volatility, which
  gives volatility clustering;
- market-wide stress episodes (about one every four days): volatility jumps and decays over
  hours, and trading volume builds up in the hours before, as it often does in real markets;
- log prices that revert slowly (half-life about two months) to each coin's typical level, so
  prices stay realistic over years;
- hourly volume with a daily seasonal cycle, more volume on larger moves, and persistent noise;
- labeled anomalies injected by :mod:`crypto_assets.market.anomalies`;
- optionally a regime shift (:class:`RegimeShift`): from a given hour on, the volatility of the
  first N coins is multiplied, so drift detection can be tested on both sides of its alarm.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from crypto_assets.market.anomalies import DEFAULT_GENERATOR, resolve_generator, run_generator
from crypto_assets.market.schema import (
    GROUND_TRUTH_COLUMNS,
    SNAPSHOT_COLUMNS,
    SourceBatch,
    conform,
    utc_naive,
)
from crypto_assets.market.universe import Coin

SIM_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)

_MARKET_STREAM = 0x4D41524B  # "MARK": the market factor's own random stream
_PRICE_REVERSION = 0.5 ** (1 / (24 * 60))  # half-life of 60 days
_VOL_PERSISTENCE = 0.98
_VOL_OF_VOL = 0.15
_MARKET_VOL = 0.005  # typical hourly log-return volatility of the market factor
_IDIO_VOL = 0.004
_STRESS_PER_HOUR = 1 / 96  # one episode every four days on average
_STRESS_DECAY = 0.5 ** (1 / 8)  # extra volatility halves every 8 hours
_PRECURSOR_HOURS = 3


def _ar1(shocks: np.ndarray, phi: float) -> np.ndarray:
    """x_t = phi * x_{t-1} + shock_t along axis 0, as a causal IIR filter (fast, prefix-stable)."""
    from scipy.signal import lfilter

    return lfilter([1.0], [1.0, -phi], shocks, axis=0)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)


def _hours_since_epoch(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - SIM_EPOCH
    if delta.total_seconds() % 3600:
        raise ValueError(f"window bounds must be on the hour, got {ts.isoformat()}")
    return int(delta.total_seconds() // 3600)


@dataclass(frozen=True)
class RegimeShift:
    """From ``at`` (an hour, UTC) on, the first ``coins`` coins' returns and ranges are ``multiplier``x as volatile."""

    at: datetime
    coins: int
    multiplier: float = 2.0

    def factors(self, n_hours: int, n_coins: int) -> np.ndarray:
        """(n_hours, n_coins) volatility multipliers: 1 before the shift and for the other coins."""
        out = np.ones((n_hours, n_coins))
        first = max(0, _hours_since_epoch(self.at))
        out[first:, : min(self.coins, n_coins)] = self.multiplier
        return out


def simulate_base(
    coins: list[Coin], seed: int, n_hours: int, shift: RegimeShift | None = None
) -> dict[str, np.ndarray]:
    """Clean hourly candles for the first ``n_hours`` after ``SIM_EPOCH``, arrays of shape (n_hours, n_coins)."""
    # Draw a few hours past the end: the volume build-up before an episode needs to know it is coming.
    market = np.random.default_rng([seed, _MARKET_STREAM]).standard_normal((n_hours + _PRECURSOR_HOURS, 4))
    episode = (_normal_cdf(market[:, 2]) < _STRESS_PER_HOUR) * (1.5 + np.abs(market[:, 3]))
    stress = _ar1(episode, _STRESS_DECAY)[:n_hours]
    precursor = sum(episode[k : n_hours + k] * (1 - (k - 1) / _PRECURSOR_HOURS) for k in range(1, _PRECURSOR_HOURS + 1))
    market = market[:n_hours]
    market_vol = _MARKET_VOL * np.exp(_ar1(_VOL_OF_VOL * market[:, 1], _VOL_PERSISTENCE) / 2) * (1 + stress)
    market_ret = market_vol * market[:, 0]
    hour_of_day = (np.arange(n_hours) % 24).astype(float)  # SIM_EPOCH is midnight UTC
    season = 0.35 * np.cos(2 * np.pi * (hour_of_day - 15.0) / 24.0)

    shape = (n_hours, len(coins))
    scale = shift.factors(n_hours, len(coins)) if shift is not None else np.ones(shape)
    close, open_, high, low, volume, mcap = (np.empty(shape) for _ in range(6))
    for j, coin in enumerate(coins):
        z = np.random.default_rng([seed, zlib.crc32(coin.coin_id.encode())]).standard_normal((n_hours, 5))
        idio_vol = _IDIO_VOL * (1 + 0.3 * (coin.beta - 1)) * np.exp(_ar1(_VOL_OF_VOL * z[:, 1], _VOL_PERSISTENCE) / 2)
        ret = (coin.beta * market_ret + idio_vol * z[:, 0]) * scale[:, j]
        log_close = np.log(coin.base_price) + _ar1(ret, _PRICE_REVERSION)
        c = np.exp(log_close)
        o = np.concatenate([[c[0] * np.exp(-ret[0])], c[:-1]])
        total_vol = np.hypot(coin.beta * market_vol, idio_vol) * scale[:, j]
        close[:, j], open_[:, j] = c, o
        high[:, j] = np.maximum(o, c) * np.exp(0.5 * total_vol * np.abs(z[:, 2]))
        low[:, j] = np.minimum(o, c) * np.exp(-0.5 * total_vol * np.abs(z[:, 3]))
        surprise = np.abs(ret) / total_vol - 0.8
        volume[:, j] = coin.base_volume * np.exp(
            season + 0.3 * surprise + _ar1(0.25 * z[:, 4], 0.7) + 0.4 * stress + 0.5 * precursor
        )
        mcap[:, j] = c * coin.supply
    return {"price": close, "open": open_, "high": high, "low": low, "volume_quote": volume, "market_cap": mcap}


def synthetic_window(
    coins: list[Coin],
    seed: int,
    start: datetime,
    end: datetime,
    anomaly_rate: float,
    shift: RegimeShift | None = None,
    anomaly_generator: str = DEFAULT_GENERATOR,
) -> SourceBatch:
    """Snapshots and anomaly ground truth for the hours in [start, end)."""
    first = _hours_since_epoch(start)
    last = _hours_since_epoch(end)
    if first < 0:
        raise ValueError(f"the synthetic market starts at {SIM_EPOCH.isoformat()}; asked for {start.isoformat()}")
    if last <= first:
        raise ValueError(f"empty window: start {start.isoformat()} is not before end {end.isoformat()}")
    base = simulate_base(coins, seed, last, shift)
    # Simulate a few hours before the window too, so events that began earlier are whole.
    generator, max_event_hours = resolve_generator(anomaly_generator)
    lead = min(first, max_event_hours)
    rows = slice(first - lead, last)
    hours = pd.date_range(utc_naive(SIM_EPOCH) + timedelta(hours=first - lead), periods=last - first + lead, freq="h")
    n = len(hours)
    frame = pd.DataFrame(
        {
            "coin_id": np.repeat([c.coin_id for c in coins], n),
            "symbol": np.repeat([c.symbol for c in coins], n),
            "observed_at": np.tile(hours.to_numpy(), len(coins)),
            **{k: v[rows].T.reshape(-1) for k, v in base.items()},
        }
    )
    frame, truth = run_generator(generator, frame, seed=seed, rate=anomaly_rate, source="synthetic")
    window_start = utc_naive(start)
    frame = frame[frame["observed_at"] >= window_start]
    truth = truth[truth["observed_at"] >= window_start]
    now = datetime.now(UTC)
    frame = frame.assign(partition_hour=frame["observed_at"], source="synthetic", ingested_at=now)
    truth = truth.assign(partition_hour=truth["observed_at"])
    return SourceBatch(
        snapshots=conform(frame, SNAPSHOT_COLUMNS),
        ground_truth=conform(truth, GROUND_TRUTH_COLUMNS),
        stats={"rows_generated": len(frame), "anomalous_rows": len(truth), "coins": len(coins)},
    )
