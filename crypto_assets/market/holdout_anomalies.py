"""A second, independent anomaly generator, for validation only: never used to design features or tune.

The project's own generator (``crypto_assets/market/anomalies.py``) is what the detector's
features were designed against, so scoring on it alone measures the test bench, not the problem.
This one draws other kinds and magnitudes from what markets and data feeds really do: slow
manipulation, feed and unit errors, contagion across coins, gradual drifts as well as sharp prints.

It has the signature of :func:`crypto_assets.market.anomalies.inject_anomalies`, so any source can
use it (``anomaly_generator="crypto_assets.market.holdout_anomalies:inject_holdout_anomalies"``,
or ``benchmarks/model_quality.py --anomaly-generator``). Its randomness is its own: a murmur3-style
hash of (seed, coin, unix hour) with other constants and streams, so an hour gets the same event
whichever window is computed, and a market-wide hash of (seed, unix hour) for contagion.

Kinds (``HOLDOUT_KINDS``; each documented in its ``_<kind>`` function):
``wash_trading``, ``spoofed_print``, ``decimal_shift``, ``frozen_price_live_volume``,
``swapped_columns``, ``volume_units``, ``slow_pump``, ``slow_drift``, ``contagion``.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from crypto_assets.market.schema import GROUND_TRUTH_COLUMNS, conform

# kind -> (min hours, max hours). Contagion is drawn market-wide; the others per coin, uniformly.
HOLDOUT_KINDS: dict[str, tuple[int, int]] = {
    "wash_trading": (6, 18),
    "spoofed_print": (1, 1),
    "decimal_shift": (1, 3),
    "frozen_price_live_volume": (8, 20),
    "swapped_columns": (2, 5),
    "volume_units": (3, 10),
    "slow_pump": (8, 16),
    "slow_drift": (10, 24),
    "contagion": (3, 6),
}
MAX_EVENT_HOURS = max(hi for _, hi in HOLDOUT_KINDS.values()) + 3  # contagion lags up to 3 hours
_PER_COIN = [k for k in HOLDOUT_KINDS if k != "contagion"]
_MEAN_HOURS = float(np.mean([(lo + hi) / 2 for k, (lo, hi) in HOLDOUT_KINDS.items() if k != "contagion"]))
_CONTAGION_HOURS = sum(HOLDOUT_KINDS["contagion"]) / 2
_CONTAGION_SHARE = 1 / len(HOLDOUT_KINDS)  # of the anomalous coin-hours, about as many as any other kind
_PRICE_COLS = ("open", "high", "low")


def _fmix64(x: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser (other constants than the first generator's splitmix64)."""
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


def _uniform(seed: int, key: str, hours: np.ndarray, stream: int) -> np.ndarray:
    """Uniform [0, 1) numbers keyed by (seed, key, unix hour, stream)."""
    salt = np.uint64(((seed * 1_000_003) ^ zlib.adler32(key.encode()) ^ (stream << 40)) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        x = _fmix64(hours.astype(np.uint64) + np.uint64(0x632BE59BD9B4E019) * salt)
        x = _fmix64(x ^ salt)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def inject_holdout_anomalies(
    frame: pd.DataFrame, *, seed: int, rate: float, source: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Overlay labeled anomalies of the holdout kinds; returns (altered snapshots, ground truth).

    ``rate`` is the expected share of coin-hours inside an event, as for the first generator.
    """
    if not 0.0 <= rate < 0.5:
        raise ValueError(f"anomaly_rate must be in [0, 0.5), got {rate}")
    out = frame.sort_values(["coin_id", "observed_at"]).reset_index(drop=True)
    labels: list[tuple] = []
    if rate == 0.0 or out.empty:
        return out, _truth(labels, source)
    cols = {c: out[c].to_numpy(dtype=float).copy() for c in ("price", *_PRICE_COLS, "volume_quote")}
    hours_all = (out["observed_at"].astype("datetime64[s]").astype("int64") // 3600).to_numpy()
    groups = out.groupby("coin_id", sort=False).indices
    busy = np.zeros(len(out), dtype=bool)
    times = out["observed_at"].to_numpy()

    def label(kind: str, event: str, rows: np.ndarray) -> None:
        busy[rows] = True
        labels.extend((out.at[i, "coin_id"], times[i], event, kind) for i in rows)

    # Contagion first: a shock on the market, felt by a share of the coins with lags.
    coins = sorted(groups)
    if len(coins) >= 3:
        span = np.unique(hours_all)
        # an event hits about half the coins for _CONTAGION_HOURS each
        p_market = rate * _CONTAGION_SHARE / (0.5 * _CONTAGION_HOURS)
        drawn = _uniform(seed, "market", span, 0) < p_market
        sizes, shares = _uniform(seed, "market", span, 1)[drawn], _uniform(seed, "market", span, 2)[drawn]
        for h, u_size, u_share in zip(span[drawn], sizes, shares, strict=True):
            hit = [c for c in coins if _uniform(seed, c, np.array([h]), 9)[0] < 0.3 + 0.4 * u_share]
            for coin in hit:
                idx = groups[coin]
                lag = int(_uniform(seed, coin, np.array([h]), 10)[0] * 4)
                start = np.searchsorted(hours_all[idx], h + lag)
                lo, hi = HOLDOUT_KINDS["contagion"]
                length = lo + int(u_size * (hi - lo + 1)) % (hi - lo + 1)
                rows = idx[start : start + length]
                if len(rows) == 0 or busy[rows].any():
                    continue
                _contagion(rows, cols, u_size, length)
                label("contagion", f"{source}-contagion-{int(h)}", rows)

    p_start = rate * (1 - _CONTAGION_SHARE) / _MEAN_HOURS
    for coin_id, idx in groups.items():
        hours = hours_all[idx]
        starts = np.flatnonzero(_uniform(seed, coin_id, hours, 3) < p_start)
        kind_u, size_u, sign_u = (_uniform(seed, coin_id, hours, s) for s in (4, 5, 6))
        for s in starts:
            kind = _PER_COIN[min(int(kind_u[s] * len(_PER_COIN)), len(_PER_COIN) - 1)]
            lo, hi = HOLDOUT_KINDS[kind]
            length = lo + int(size_u[s] * 997) % (hi - lo + 1)
            rows = idx[s : s + length]
            if busy[rows].any() or (kind == "frozen_price_live_volume" and s == 0):
                continue  # events on one coin never overlap; a freeze needs a last good hour
            _APPLY[kind](rows, idx[s - 1] if s > 0 else rows[0], cols, size_u[s], sign_u[s] < 0.5, length)
            label(kind, f"{source}-{kind}-{coin_id}-{int(hours[s])}", rows)
    for c, values in cols.items():
        out[c] = values
    return out, _truth(labels, source)


def _truth(labels: list[tuple], source: str) -> pd.DataFrame:
    frame = pd.DataFrame(labels, columns=["coin_id", "observed_at", "anomaly_id", "anomaly_kind"]).assign(source=source)
    frame["partition_hour"] = pd.to_datetime(frame["observed_at"]).dt.floor("h")
    return conform(frame, GROUND_TRUTH_COLUMNS)


def _scale(rows: np.ndarray, factor: np.ndarray, cols: dict) -> None:
    for c in ("price", *_PRICE_COLS):
        cols[c][rows] *= factor
    _bracket(rows, cols)


def _bracket(rows: np.ndarray, cols: dict) -> None:
    """High and low still bracket open and close (NaN stays NaN)."""
    body_hi = np.fmax(cols["price"][rows], cols["open"][rows])
    body_lo = np.fmin(cols["price"][rows], cols["open"][rows])
    cols["high"][rows] = np.where(np.isnan(cols["high"][rows]), np.nan, np.fmax(cols["high"][rows], body_hi))
    cols["low"][rows] = np.where(np.isnan(cols["low"][rows]), np.nan, np.fmin(cols["low"][rows], body_lo))


def _wash_trading(rows, prev, cols, u, up, length) -> None:
    """Wash trading: accounts trading with themselves inflate volume 2.5-5x for 6-18 hours, price barely moves.

    Volume-only manipulation, long and moderate, unlike a one-hour spike: the candle range even
    narrows a little, since self-trades cross at the mid.
    """
    cols["volume_quote"][rows] *= 2.5 + 2.5 * u
    mid = (cols["high"][rows] + cols["low"][rows]) / 2
    cols["high"][rows] = mid + 0.8 * (cols["high"][rows] - mid)
    cols["low"][rows] = mid - 0.8 * (mid - cols["low"][rows])
    _bracket(rows, cols)


def _spoofed_print(rows, prev, cols, u, up, length) -> None:
    """Spoofed print: one hour closes 3-8% away (a thin book walked by a spoofer), the next hour is normal again.

    Only the close and the wick move; volume is ordinary, so it is a price-only reversal.
    """
    move = (0.03 + 0.05 * u) * (1 if up else -1)
    cols["price"][rows] *= np.exp(move)
    _bracket(rows, cols)


def _decimal_shift(rows, prev, cols, u, up, length) -> None:
    """Decimal shift: a unit error in the feed reports prices x100 or /100 for 1-3 hours (volume untouched)."""
    _scale(rows, np.full(len(rows), 100.0 if up else 0.01), cols)


def _frozen_price_live_volume(rows, prev, cols, u, up, length) -> None:
    """Frozen price, live volume: the price feed sticks at the last good candle for 8-20 hours while volume
    keeps arriving from another feed. Longer than the first generator's stale feed, and volume is not frozen."""
    for c in ("price", *_PRICE_COLS):
        cols[c][rows] = np.where(np.isnan(cols[c][rows]), np.nan, cols["price"][prev])


def _swapped_columns(rows, prev, cols, u, up, length) -> None:
    """Swapped columns: a schema mix-up for 2-5 hours, high and low swapped (high < low) and open and close swapped.

    The close then carries the previous price back: returns flip sign, a pattern of reversals.
    """
    cols["high"][rows], cols["low"][rows] = cols["low"][rows].copy(), cols["high"][rows].copy()
    has_open = ~np.isnan(cols["open"][rows])
    price, open_ = cols["price"][rows].copy(), cols["open"][rows].copy()
    cols["price"][rows] = np.where(has_open, open_, price)
    cols["open"][rows] = np.where(has_open, price, open_)


def _volume_units(rows, prev, cols, u, up, length) -> None:
    """Volume in wrong units: 3-10 hours report volume in thousands (/1000) or in base-unit lots (x1000)."""
    cols["volume_quote"][rows] *= 0.001 if up else 1000.0


def _slow_pump(rows, prev, cols, u, up, length) -> None:
    """Slow pump: a coordinated ramp of +0.8-2% an hour for 8-16 hours on 1.5-3x volume, the last two hours
    dumping most of it. Gradual: no single hour is extreme until the dump."""
    step = 0.008 + 0.012 * u
    ramp = step * np.arange(1, length + 1, dtype=float)
    if length > 3:
        ramp[-2:] = ramp[-3] * np.array([0.5, 0.15])
    _scale(rows, np.exp(ramp[: len(rows)]), cols)  # the whole event's shape, cut where the window ends
    cols["volume_quote"][rows] *= 1.5 + 1.5 * u


def _slow_drift(rows, prev, cols, u, up, length) -> None:
    """Slow drift: a mispriced index or oracle drifts 0.6-1.2% an hour away from the market for 10-24 hours,
    on ordinary volume, then snaps back. A gradual move with nothing else unusual."""
    n = len(rows)
    drift = (0.006 + 0.006 * u) * np.arange(1, n + 1, dtype=float) * (1 if up else -1)
    _scale(rows, np.exp(drift), cols)


def _contagion(rows, cols, u, length) -> None:
    """Contagion: a market shock (an exchange failure, a stablecoin de-peg) hits 30-70% of coins, each 0-3
    hours after the first, with a 6-15% drop recovering by half, on 2-4x volume. Many coins at once: a coin's
    move against the market median is small even though every hit coin is anomalous."""
    depth = 0.06 + 0.09 * u
    path = -depth * np.concatenate([[1.0], np.linspace(1.0, 0.5, length)[1:]])
    _scale(rows, np.exp(path[: len(rows)]), cols)  # the whole event's shape, cut where the window ends
    cols["volume_quote"][rows] *= 2.0 + 2.0 * u


_APPLY = {k: globals()[f"_{k}"] for k in _PER_COIN}
