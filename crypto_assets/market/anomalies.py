"""Labeled anomaly injection, shared by the synthetic simulator and replayed real data.

Whether an event starts at (coin, hour) is decided by a counter-based hash of
(seed, coin_id, unix hour), never by a stream position, so the same hour gets the same event
whichever window is being computed. Events overlay prices and volumes; the labels go to a
separate ground-truth frame that models never see.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable

import numpy as np
import pandas as pd

from crypto_assets.market.schema import GROUND_TRUTH_COLUMNS, conform

# kind -> (min hours, max hours). The mix is uniform over kinds.
ANOMALY_KINDS: dict[str, tuple[int, int]] = {
    "pump_and_dump": (4, 6),
    "flash_crash": (2, 3),
    "volume_spike": (1, 2),
    "stale_price": (3, 6),
}
MAX_EVENT_HOURS = max(hi for _, hi in ANOMALY_KINDS.values())
_MEAN_EVENT_HOURS = float(np.mean([(lo + hi) / 2 for lo, hi in ANOMALY_KINDS.values()]))
_KINDS = list(ANOMALY_KINDS)


DEFAULT_GENERATOR = "crypto_assets.market.anomalies:inject_anomalies"
Generator = Callable[..., tuple[pd.DataFrame, pd.DataFrame]]


def resolve_generator(spec: str) -> tuple[Generator, int]:
    """``module:function`` -> (the generator, the hours of lead it needs so events that began earlier are whole).

    Any function with the signature of :func:`inject_anomalies` plugs in; its module's
    ``MAX_EVENT_HOURS`` (48 when it has none) says how long its events can be.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"an anomaly generator is named module:function, got {spec!r}")
    module = importlib.import_module(module_name)
    generator = getattr(module, attribute, None)
    if not callable(generator):
        raise ValueError(f"{spec!r}: {module_name} has no function {attribute}")
    return generator, int(getattr(module, "MAX_EVENT_HOURS", 48))


def run_generator(
    generator: Generator, frame: pd.DataFrame, *, seed: int, rate: float, source: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Call a plugged-in generator and make its ground truth safe to store, whatever it returns.

    Unknown kinds are kept as they are (evaluation reports recall per kind, whichever kinds it finds);
    a missing kind or id is named, rows for coin-hours not in the frame are dropped, duplicates are
    merged, and every column is typed.
    """
    altered, truth = generator(frame, seed=seed, rate=rate, source=source)
    truth = pd.DataFrame(truth).copy()
    if truth.empty or not {"coin_id", "observed_at"} <= set(truth.columns):
        return altered, _ground_truth([])
    truth["observed_at"] = pd.to_datetime(truth["observed_at"])
    if getattr(truth["observed_at"].dt, "tz", None) is not None:
        truth["observed_at"] = truth["observed_at"].dt.tz_convert("UTC").dt.tz_localize(None)
    kind = truth["anomaly_kind"] if "anomaly_kind" in truth else pd.Series(None, index=truth.index)
    truth["anomaly_kind"] = kind.where(kind.notna(), "unnamed").astype(str)
    if "anomaly_id" not in truth:
        truth["anomaly_id"] = None
    truth["anomaly_id"] = truth["anomaly_id"].where(
        truth["anomaly_id"].notna(), source + "-" + truth["coin_id"].astype(str) + "-" + truth["anomaly_kind"]
    )
    truth["source"] = source
    keys = pd.MultiIndex.from_frame(
        altered[["coin_id", "observed_at"]].assign(observed_at=pd.to_datetime(altered["observed_at"]))
    )
    truth = truth[pd.MultiIndex.from_frame(truth[["coin_id", "observed_at"]]).isin(keys)]
    truth = truth.drop_duplicates(["coin_id", "observed_at"]).reset_index(drop=True)
    truth["partition_hour"] = truth["observed_at"].dt.floor("h")
    return altered, conform(truth, GROUND_TRUTH_COLUMNS)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-mixed 64-bit hash of each uint64."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, coin_id: str, hours: np.ndarray, stream: int) -> np.ndarray:
    """Uniform [0, 1) numbers keyed by (seed, coin, unix hour, stream)."""
    key = (np.uint64(seed & 0xFFFFFFFF) << np.uint64(32)) | np.uint64(zlib.crc32(coin_id.encode()))
    with np.errstate(over="ignore"):
        x = hours.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x = _mix64(x ^ _mix64(np.full_like(x, key) + np.uint64(stream)))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def inject_anomalies(frame: pd.DataFrame, *, seed: int, rate: float, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Overlay labeled anomalies on snapshots; returns (altered snapshots, ground truth).

    ``frame`` holds the unified snapshot columns for one or more coins, ideally starting
    ``MAX_EVENT_HOURS`` before the window of interest so events that began earlier are complete.
    ``rate`` is the expected fraction of coin-hours inside an anomaly. The ground truth always has
    the typed ``GROUND_TRUTH_COLUMNS``, also when no event was drawn, so callers never special-case it.
    """
    if not 0.0 <= rate < 0.5:
        raise ValueError(f"anomaly_rate must be in [0, 0.5), got {rate}")
    out = frame.sort_values(["coin_id", "observed_at"]).reset_index(drop=True)
    labels: list[dict] = []
    if rate == 0.0 or out.empty:
        return out, _ground_truth(labels)
    p_start = rate / _MEAN_EVENT_HOURS
    price = out["price"].to_numpy(dtype=float).copy()
    cols = {c: out[c].to_numpy(dtype=float).copy() for c in ("open", "high", "low", "volume_quote")}
    hours_all = (out["observed_at"].astype("datetime64[s]").astype("int64") // 3600).to_numpy()
    for coin_id, idx in out.groupby("coin_id", sort=False).indices.items():
        hours = hours_all[idx]
        starts = np.flatnonzero(hash_uniform(seed, coin_id, hours, 0) < p_start)
        kind_u = hash_uniform(seed, coin_id, hours, 1)
        size_u = hash_uniform(seed, coin_id, hours, 2)
        busy_until = -1
        for s in starts:
            if s <= busy_until:
                continue  # events on one coin never overlap
            kind = _KINDS[min(int(kind_u[s] * len(_KINDS)), len(_KINDS) - 1)]
            lo, hi = ANOMALY_KINDS[kind]
            length = lo + int(size_u[s] * (hi - lo + 1)) % (hi - lo + 1)
            span = idx[s : s + length]
            busy_until = s + length - 1
            _apply(kind, span, length, idx, s, size_u[s], price, cols)
            event_id = f"{source}-{coin_id}-{int(hours[s])}"
            labels.extend(
                {
                    "coin_id": coin_id,
                    "observed_at": out.at[i, "observed_at"],
                    "anomaly_id": event_id,
                    "anomaly_kind": kind,
                    "source": source,
                }
                for i in span
            )
    out["price"] = price
    for c, values in cols.items():
        out[c] = values
    return out, _ground_truth(labels)


def _ground_truth(labels: list[dict]) -> pd.DataFrame:
    """Labels as typed ground-truth rows (datetime columns even when there are none)."""
    frame = pd.DataFrame(labels, columns=["coin_id", "observed_at", "anomaly_id", "anomaly_kind", "source"])
    frame["partition_hour"] = pd.to_datetime(frame["observed_at"]).dt.floor("h")
    return conform(frame, GROUND_TRUTH_COLUMNS)


def _apply(kind: str, span: np.ndarray, length: int, idx: np.ndarray, s: int, u: float, price, cols) -> None:
    """Alter rows ``span`` (positions into the arrays) in place for one event of ``length`` hours.

    ``span`` is the part of the event inside the frame: shorter than ``length`` when the window ends
    first. Shapes follow the whole event, so an hour gets the same values whichever window holds it
    (an hourly run and a backfill write the same rows).
    """
    volume = cols["volume_quote"]
    n = len(span)
    if kind == "pump_and_dump":
        peak = 0.12 + 0.23 * u  # +12% .. +35% at the top
        rise = min(2, length - 1)
        whole = np.concatenate([np.linspace(peak / rise, peak, rise), np.linspace(peak, 0.0, length - rise + 1)[1:]])
        _scale_prices(span, np.exp(whole[:n]), price, cols)
        volume[span] *= 4.0 + 6.0 * u
    elif kind == "flash_crash":
        depth = 0.12 + 0.18 * u
        shape = -depth * np.array([1.0, 0.3, 0.08])[:n]
        _scale_prices(span, np.exp(shape), price, cols)
        cols["low"][span[0]] = min(cols["low"][span[0]], price[span[0]] * (1 - 0.3 * depth))
        volume[span] *= 3.0 + 3.0 * u
    elif kind == "volume_spike":
        volume[span] *= 8.0 + 12.0 * u
    elif kind == "stale_price":
        # The feed stops updating: price, candle and volume repeat the last good hour.
        prev = idx[s - 1] if s > 0 else span[0]
        frozen = price[prev]
        price[span] = frozen
        for c in ("open", "high", "low"):
            cols[c][span] = np.where(np.isnan(cols[c][span]), np.nan, frozen)
        volume[span] = volume[prev]


def _scale_prices(span: np.ndarray, factor: np.ndarray, price, cols) -> None:
    price[span] *= factor
    for c in ("open", "high", "low"):
        cols[c][span] *= factor
    # keep candles consistent: high/low must still bracket open and close
    cols["high"][span] = np.fmax(cols["high"][span], np.fmax(price[span], cols["open"][span]))
    cols["low"][span] = np.fmin(cols["low"][span], np.fmin(price[span], cols["open"][span]))
