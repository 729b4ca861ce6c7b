"""CoinGecko v3 client and the CoinGecko market source.

The client is deliberately small: two endpoints, a client-side rate limit, retries with backoff for
transient failures, strict response validation and error messages that name the request path and
what was wrong, but never the API key.
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import requests

from crypto_assets.market.schema import (
    QUARANTINE_COLUMN_NAMES,
    QUARANTINE_COLUMNS,
    SNAPSHOT_COLUMN_NAMES,
    SNAPSHOT_COLUMNS,
    SourceBatch,
    conform,
    empty_snapshots,
    utc_naive,
)
from crypto_assets.market.universe import DEFAULT_COINS

log = logging.getLogger(__name__)

SOURCE = "coingecko"
API_KEY_ENV_VAR = "COINGECKO_API_KEY"
PLAN_HEADERS = {"demo": "x-cg-demo-api-key", "pro": "x-cg-pro-api-key"}
MARKETS_PAGE_SIZE = 250  # the API's maximum per_page
# CoinGecko picks the chart granularity from the requested span: above 90 days it only returns
# daily points, so longer windows are fetched in pieces of at most this length to stay hourly.
MAX_HOURLY_SPAN = timedelta(days=90)
_EXCERPT_CHARS = 200


@dataclass(frozen=True)
class CoinGeckoSettings:
    base_url: str = "https://api.coingecko.com/api/v3"  # pro: https://pro-api.coingecko.com/api/v3
    # Secret: comes from the COINGECKO_API_KEY env var only, and is kept out of repr.
    api_key: str | None = field(default=None, repr=False)
    api_plan: str = "demo"  # selects the header: demo -> x-cg-demo-api-key, pro -> x-cg-pro-api-key
    coin_ids: tuple[str, ...] = tuple(c.coin_id for c in DEFAULT_COINS)
    vs_currency: str = "usd"
    requests_per_minute: float = 25.0  # client-side: requests start at least 60/rpm seconds apart
    timeout_s: float = 10.0
    max_attempts: int = 5  # total attempts per request, the first one included
    backoff_base_s: float = 1.0  # wait before retry n is base * 2**(n-1), capped at backoff_max_s
    backoff_max_s: float = 60.0

    def __post_init__(self) -> None:
        # Accept any sequence of ids but store a tuple, so the settings stay hashable.
        object.__setattr__(self, "coin_ids", tuple(self.coin_ids))
        url = urllib.parse.urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        if self.api_plan not in PLAN_HEADERS:
            raise ValueError(f"api_plan must be one of {sorted(PLAN_HEADERS)}, got {self.api_plan!r}")
        if not self.coin_ids:
            raise ValueError("coin_ids must name at least one CoinGecko coin id")
        if not all(isinstance(c, str) and c.strip() for c in self.coin_ids):
            raise ValueError(f"coin_ids must be non-empty strings, got {self.coin_ids!r}")
        if not self.vs_currency:
            raise ValueError("vs_currency must not be empty")
        if not self.requests_per_minute > 0:
            raise ValueError(f"requests_per_minute must be > 0, got {self.requests_per_minute}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.backoff_base_s < 0:
            raise ValueError(f"backoff_base_s must be >= 0, got {self.backoff_base_s}")
        if self.backoff_max_s < 0:
            raise ValueError(f"backoff_max_s must be >= 0, got {self.backoff_max_s}")


class CoinGeckoError(RuntimeError):
    """Base class: the message names the request path and what went wrong (never the API key)."""


class CoinGeckoAuthError(CoinGeckoError):
    """401/403: the API key is missing, invalid or for the wrong plan."""


class CoinGeckoNotFoundError(CoinGeckoError):
    """404, for example an unknown coin id on the chart endpoint."""


class CoinGeckoResponseError(CoinGeckoError):
    """A response that is not the JSON shape the endpoint documents."""


class CoinGeckoRetriesExhausted(CoinGeckoError):
    """Rate limiting, server errors, timeouts or connection errors outlasted ``max_attempts``."""


class CoinGeckoClient:
    """CoinGecko v3 over one ``requests.Session``; ``sleep``/``clock`` are injectable for tests."""

    def __init__(
        self,
        settings: CoinGeckoSettings,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._last_request_at: float | None = None
        self.request_count = 0  # HTTP requests sent, retries included
        self.retry_count = 0

    def __repr__(self) -> str:
        return (
            f"CoinGeckoClient(base_url={self.settings.base_url!r}, api_plan={self.settings.api_plan!r}, "
            f"requests={self.request_count}, retries={self.retry_count})"
        )

    def close(self) -> None:
        self._session.close()

    def markets(self, coin_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Current market data for ``coin_ids``; ids CoinGecko does not know are simply absent."""
        path = "/coins/markets"
        out: list[dict[str, Any]] = []
        ids = list(coin_ids)
        for i in range(0, len(ids), MARKETS_PAGE_SIZE):
            params = {
                "vs_currency": self.settings.vs_currency,
                "ids": ",".join(ids[i : i + MARKETS_PAGE_SIZE]),
                "per_page": MARKETS_PAGE_SIZE,
                "page": 1,
            }
            body = self._get_json(path, params)
            if not isinstance(body, list):
                raise CoinGeckoResponseError(f"GET {path}: expected a JSON list, got {_json_type(body)}")
            out.extend(self._market_item(path, n, item) for n, item in enumerate(body))
        return out

    def market_chart_range(self, coin_id: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Price, market cap and 24h-volume points between ``start`` and ``end`` (both inclusive).

        Returns columns observed_at (naive UTC), price, market_cap, volume_quote, sorted by time.
        A null price is kept as NaN so the caller can quarantine it; non-numbers raise.
        """
        path = f"/coins/{urllib.parse.quote(coin_id, safe='')}/market_chart/range"
        params = {
            "vs_currency": self.settings.vs_currency,
            "from": _unix_seconds(start),
            "to": _unix_seconds(end),
        }
        body = self._get_json(path, params)
        if not isinstance(body, dict):
            raise CoinGeckoResponseError(f"GET {path}: expected a JSON object, got {_json_type(body)}")
        prices = _series(path, body, "prices")
        # Market caps and volumes normally share the price timestamps; join on them to be safe.
        caps = dict(_series(path, body, "market_caps"))
        volumes = dict(_series(path, body, "total_volumes"))
        try:
            observed_at = pd.to_datetime([ms for ms, _ in prices], unit="ms")
        except (ValueError, OverflowError):
            raise CoinGeckoResponseError(f"GET {path}: 'prices' has timestamps out of range") from None
        frame = pd.DataFrame(
            {
                "observed_at": observed_at,
                "price": [p for _, p in prices],
                "market_cap": [caps.get(ms) for ms, _ in prices],
                "volume_quote": [volumes.get(ms) for ms, _ in prices],
            }
        )
        frame["observed_at"] = frame["observed_at"].astype("datetime64[us]")
        for column in ("price", "market_cap", "volume_quote"):
            frame[column] = frame[column].astype("float64")
        return frame.sort_values("observed_at", kind="stable").reset_index(drop=True)

    def _market_item(self, path: str, n: int, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise CoinGeckoResponseError(f"GET {path}: item {n} is {_json_type(item)}, expected an object")
        where = f"GET {path}: item {n}"
        coin_id = _required(where, item, "id", str)
        where = f"{where} (id={coin_id!r})"
        symbol = _required(where, item, "symbol", str)
        # A null or non-positive price is data (a dead or delisted coin): the window quarantines that
        # coin. A value of the wrong type means the API itself is broken, and raises.
        price = _number(where, "current_price", _required(where, item, "current_price"))
        last_updated = _required(where, item, "last_updated", str)
        try:
            observed_at = utc_naive(datetime.fromisoformat(last_updated))
        except ValueError:
            raise CoinGeckoResponseError(
                f"{where}: field 'last_updated' is not an ISO timestamp: {_excerpt(last_updated)!r}"
            ) from None
        return {
            "coin_id": coin_id,
            "symbol": symbol.upper(),
            "price": price,
            "market_cap": _number(where, "market_cap", item.get("market_cap")),
            "volume_quote": _number(where, "total_volume", item.get("total_volume")),
            "observed_at": observed_at,
        }

    def _get_json(self, path: str, params: dict[str, Any]) -> Any:
        """GET ``path`` with rate limiting and retries; the decoded JSON body of a 2xx answer."""
        url = self.settings.base_url.rstrip("/") + path
        headers = {"Accept": "application/json"}
        if self.settings.api_key:
            headers[PLAN_HEADERS[self.settings.api_plan]] = self.settings.api_key
        attempts = self.settings.max_attempts
        failure = ""
        for attempt in range(1, attempts + 1):
            self._throttle()
            self.request_count += 1
            try:
                resp = self._session.get(url, params=params, headers=headers, timeout=self.settings.timeout_s)
            except requests.Timeout as exc:
                failure = f"no response within timeout_s={self.settings.timeout_s} ({type(exc).__name__})"
                delay = self._backoff(attempt)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                failure = f"connection failed: {self._redact(_excerpt(str(exc)))}"
                delay = self._backoff(attempt)
            except requests.RequestException as exc:
                # Not transient (invalid URL and the like): retrying cannot help.
                raise CoinGeckoError(f"GET {path}: request failed: {type(exc).__name__}") from exc
            else:
                if 200 <= resp.status_code < 300:
                    return self._decode(path, resp)
                failure = f"HTTP {resp.status_code} ({self._describe_body(resp)})"
                if resp.status_code == 429:
                    delay = self._retry_after(resp, attempt)
                elif resp.status_code >= 500:
                    delay = self._backoff(attempt)
                else:
                    raise self._client_error(path, resp, failure)
            if attempt < attempts:
                self.retry_count += 1
                log.warning(
                    "CoinGecko GET %s failed (%s); retry %d of %d in %.2fs",
                    path,
                    failure,
                    attempt,
                    attempts - 1,
                    delay,
                )
                self._sleep(delay)
        raise CoinGeckoRetriesExhausted(
            f"GET {path}: giving up after {attempts} attempts (max_attempts={attempts}); last failure: {failure}"
        )

    def _throttle(self) -> None:
        interval = 60.0 / self.settings.requests_per_minute
        if self._last_request_at is not None:
            wait = self._last_request_at + interval - self._clock()
            if wait > 0:
                self._sleep(wait)
        self._last_request_at = self._clock()

    def _backoff(self, attempt: int) -> float:
        return min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1))

    def _retry_after(self, resp: requests.Response, attempt: int) -> float:
        try:
            seconds = float(resp.headers.get("Retry-After", ""))
        except ValueError:  # absent, or the HTTP-date form: plain backoff is good enough
            return self._backoff(attempt)
        if not math.isfinite(seconds):
            return self._backoff(attempt)
        return min(max(seconds, 0.0), self.settings.backoff_max_s)

    def _decode(self, path: str, resp: requests.Response) -> Any:
        # A proxy or Cloudflare may answer 200 with an HTML page; never try to read that as data.
        content_type = resp.headers.get("Content-Type", "")
        if "json" not in content_type.lower():
            raise CoinGeckoResponseError(
                f"GET {path}: expected JSON, got HTTP {resp.status_code} "
                f"with Content-Type {content_type or 'missing'!r}: {self._redact(_excerpt(resp.text))!r}"
            )
        try:
            return resp.json()
        except ValueError:
            raise CoinGeckoResponseError(
                f"GET {path}: body is not valid JSON: {self._redact(_excerpt(resp.text))!r}"
            ) from None

    def _client_error(self, path: str, resp: requests.Response, failure: str) -> CoinGeckoError:
        status = resp.status_code
        if status in (401, 403):
            plan = self.settings.api_plan
            key_state = "invalid" if self.settings.api_key else "missing"
            return CoinGeckoAuthError(
                f"GET {path}: HTTP {status}, CoinGecko rejected the request: the API key is {key_state} "
                f"for the {plan!r} plan (header {PLAN_HEADERS[plan]}, base_url {self.settings.base_url}). "
                f"Set env var {API_KEY_ENV_VAR} to a valid {plan} key; demo keys only work with "
                f"api.coingecko.com, pro keys only with pro-api.coingecko.com. "
                f"Server said: {self._describe_body(resp)}"
            )
        if status == 404:
            return CoinGeckoNotFoundError(f"GET {path}: HTTP 404 not found: {self._describe_body(resp)}")
        return CoinGeckoError(f"GET {path}: {failure}")

    def _describe_body(self, resp: requests.Response) -> str:
        """The error CoinGecko reports in a body, or a short excerpt of whatever came back."""
        try:
            body = resp.json()
        except ValueError:
            body = None
        message: Any = None
        if isinstance(body, dict):
            status = body.get("status")
            message = body.get("error") or (status.get("error_message") if isinstance(status, dict) else None)
        if message is None:
            content_type = resp.headers.get("Content-Type", "no Content-Type")
            message = f"{content_type}: {_excerpt(resp.text)!r}"
        return self._redact(str(message))

    def _redact(self, text: str) -> str:
        # Bodies and library messages are quoted in errors; a server echoing the key must not leak it.
        key = self.settings.api_key
        return text.replace(key, "***") if key else text


def fetch_coingecko_window(client: CoinGeckoClient, start: datetime, end: datetime) -> SourceBatch:
    """Hourly snapshots for the window [start, end) for every configured coin.

    Ids unknown to CoinGecko, coins /coins/markets gives no current price (dead or delisted), and
    points with a missing or non-positive price are quarantined, each with its reason, and the
    other coins land; a malformed response raises. With several points in an hour (5-minute granularity) the row
    gets open/high/low; with hourly granularity those stay NULL rather than faking a range.
    """
    window_start, window_end = _check_window(start, end)
    ingested_at = utc_naive(datetime.now(UTC))
    requests_before, retries_before = client.request_count, client.retry_count
    coin_ids = list(dict.fromkeys(client.settings.coin_ids))  # de-duplicated, order kept
    markets = {m["coin_id"]: m for m in client.markets(coin_ids)}
    symbols = {coin_id: m["symbol"] for coin_id, m in markets.items()}

    quarantine: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    points_read = out_of_window = 0
    for coin_id in coin_ids:
        if coin_id not in symbols:
            quarantine.append(
                {
                    "source_ref": f"{SOURCE}:/coins/markets",
                    # No time of its own: it belongs to the window that found it, so a re-run replaces it.
                    "partition_hour": window_start,
                    "coin_id": coin_id,
                    "reason": "unknown_coin_id",
                    "detail": f"{coin_id!r} was requested but is not in CoinGecko's /coins/markets answer; "
                    "coin_ids must be CoinGecko API ids such as 'bitcoin', not ticker symbols",
                    "raw_record": coin_id,
                }
            )
            continue
        if markets[coin_id]["price"] is None or markets[coin_id]["price"] <= 0:
            quarantine.append(
                {
                    "source_ref": f"{SOURCE}:/coins/markets",
                    "partition_hour": window_start,
                    "coin_id": coin_id,
                    "reason": "no_current_price",
                    "detail": f"/coins/markets reports current_price {markets[coin_id]['price']!r} for {coin_id!r} "
                    "(a dead or delisted coin?): its chart was not fetched; the other coins were",
                    "raw_record": json.dumps({"id": coin_id, "current_price": markets[coin_id]["price"]}),
                }
            )
            continue
        source_ref = f"{SOURCE}:/coins/{coin_id}/market_chart/range"
        kept: list[pd.DataFrame] = []
        for chunk_start, chunk_end in _chunks(window_start, window_end):
            points = client.market_chart_range(coin_id, chunk_start, chunk_end)
            points_read += len(points)
            # The API's range is inclusive of `to`; the window is half-open.
            inside = points[(points["observed_at"] >= chunk_start) & (points["observed_at"] < chunk_end)]
            out_of_window += len(points) - len(inside)
            good = inside["price"] > 0  # NaN compares False: missing prices are rejected too
            quarantine.extend(_rejected_point(coin_id, source_ref, row) for row in inside[~good].itertuples())
            kept.append(inside[good])
        hourly = _hourly(pd.concat(kept, ignore_index=True))
        if len(hourly):
            hourly["coin_id"] = coin_id
            hourly["symbol"] = symbols[coin_id]
            frames.append(hourly)

    snapshots = pd.concat(frames, ignore_index=True) if frames else empty_snapshots()
    snapshots["source"] = SOURCE
    snapshots["ingested_at"] = ingested_at
    snapshots = snapshots.sort_values(["partition_hour", "coin_id"], kind="stable")
    rejected = pd.DataFrame(quarantine, columns=QUARANTINE_COLUMN_NAMES)
    rejected["source"] = SOURCE
    rejected["ingested_at"] = ingested_at

    stats = {
        "requests": client.request_count - requests_before,
        "retries": client.retry_count - retries_before,
        "points_read": points_read,
        "points_out_of_window": out_of_window,
        "rows_written": len(snapshots),
        "quarantined": len(rejected),
        "coins_requested": len(coin_ids),
        "coins_returned": len(symbols.keys() & set(coin_ids)),
        "coins_without_price": sum(1 for q in quarantine if q["reason"] == "no_current_price"),
    }
    log.info("CoinGecko window %s to %s: %s", window_start, window_end, stats)
    return SourceBatch(
        snapshots=conform(snapshots[SNAPSHOT_COLUMN_NAMES], SNAPSHOT_COLUMNS),
        quarantine=conform(rejected, QUARANTINE_COLUMNS),
        stats=stats,
    )


def _hourly(points: pd.DataFrame) -> pd.DataFrame:
    """One row per UTC hour: the hour's last point, plus open/high/low when it has 2+ points."""
    points = points.sort_values("observed_at", kind="stable")
    points["partition_hour"] = points["observed_at"].dt.floor("h")
    last = points.drop_duplicates("partition_hour", keep="last").set_index("partition_hour")
    ranges = points.groupby("partition_hour")["price"].agg(open="first", high="max", low="min", n="count")
    hourly = last.join(ranges)
    # A single point per hour (hourly granularity) says nothing about the hour's range.
    several = hourly["n"] >= 2
    for column in ("open", "high", "low"):
        hourly[column] = hourly[column].where(several)
    return hourly.drop(columns="n").reset_index()


def _rejected_point(coin_id: str, source_ref: str, row: Any) -> dict[str, Any]:
    price = None if pd.isna(row.price) else float(row.price)
    ms = int(pd.Timestamp(row.observed_at).tz_localize("UTC").value // 1_000_000)
    if price is None:
        reason, detail = "missing_price", "price is null"
    else:
        reason, detail = "non_positive_price", f"price is {price!r}, must be > 0"
    return {
        "source_ref": source_ref,
        "partition_hour": row.observed_at.floor("h"),
        "coin_id": coin_id,
        "observed_at": row.observed_at,
        "reason": reason,
        "detail": detail,
        "raw_record": json.dumps([ms, price]),
    }


def _check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The window as naive UTC, after checking it is non-empty and on hour boundaries."""
    window_start, window_end = utc_naive(start), utc_naive(end)
    for name, ts in (("start", window_start), ("end", window_end)):
        if ts != ts.replace(minute=0, second=0, microsecond=0):
            raise ValueError(f"{name} must be on an hour boundary, got {ts.isoformat()}")
    if window_end <= window_start:
        raise ValueError(f"end must be after start, got start={window_start} end={window_end}")
    return window_start, window_end


def _chunks(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    while start < end:
        chunk_end = min(end, start + MAX_HOURLY_SPAN)
        yield start, chunk_end
        start = chunk_end


def _unix_seconds(ts: datetime) -> int:
    # Naive datetimes are UTC here; datetime.timestamp() would read them as local time.
    return int(utc_naive(ts).replace(tzinfo=UTC).timestamp())


def _required(where: str, item: dict[str, Any], name: str, kind: type = object) -> Any:
    """``item[name]``, which must be present and (when ``kind`` is given) of that type."""
    if name not in item:
        raise CoinGeckoResponseError(f"{where}: missing field {name!r}")
    value = item[name]
    if not isinstance(value, kind):
        raise CoinGeckoResponseError(
            f"{where}: field {name!r} should be {kind.__name__}, got {_json_type(value)} {_excerpt(repr(value))}"
        )
    return value


def _number(where: str, name: str, value: Any) -> float | None:
    """A finite JSON number as float, None for null; anything else is a malformed response."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CoinGeckoResponseError(f"{where}: field {name!r} is not a number: {_excerpt(repr(value))}")
    return float(value)


def _series(path: str, body: dict[str, Any], name: str) -> list[tuple[int, float | None]]:
    """A chart series ``[[ms, value], ...]`` as (ms, value) pairs; null values are kept as None."""
    where = f"GET {path}"
    series = _required(where, body, name, list)
    pairs: list[tuple[int, float | None]] = []
    for n, point in enumerate(series):
        if not (isinstance(point, list) and len(point) == 2):
            raise CoinGeckoResponseError(
                f"{where}: {name}[{n}] should be a [timestamp_ms, value] pair, got {_excerpt(repr(point))}"
            )
        ms = _number(where, f"{name}[{n}] timestamp", point[0])
        if ms is None:
            raise CoinGeckoResponseError(f"{where}: {name}[{n}] has a null timestamp")
        pairs.append((int(ms), _number(where, f"{name}[{n}] value", point[1])))
    return pairs


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT_CHARS else flat[:_EXCERPT_CHARS] + "..."
