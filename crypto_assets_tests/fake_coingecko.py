"""A local fake of the CoinGecko v3 API for tests: real response shapes, scriptable failures.

Usage::

    with FakeCoinGecko() as server:
        client = CoinGeckoClient(CoinGeckoSettings(base_url=server.base_url))
        server.queue("/coins/markets", [(429, {"Retry-After": "1"}, RATE_LIMITED_BODY)])
        client.markets(["bitcoin"])  # 429 first, then the normal answer

Paths given to ``queue`` and recorded in ``requests`` are relative to ``/api/v3`` and raw (still
percent-encoded). Queued replies are served first, in order; after that the path gets its normal
generated answer. Everything is deterministic: prices are a function of coin and time.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from crypto_assets.market.universe import DEFAULT_COINS, Coin

API_PREFIX = "/api/v3"
# The fixed "now" of /coins/markets answers.
LAST_UPDATED = "2024-05-01T12:34:56.789Z"
LAST_UPDATED_S = 1714566896.789

COIN_NOT_FOUND_BODY = {"error": "coin not found"}
AUTH_MISSING_BODY = {"status": {"error_code": 10002, "error_message": "API Key Missing"}}
AUTH_INVALID_BODY = {"status": {"error_code": 10010, "error_message": "Invalid API Key"}}
RATE_LIMITED_BODY = {
    "status": {
        "error_code": 429,
        "error_message": "You've exceeded the Rate Limit. Please visit https://www.coingecko.com/en/api/pricing",
    }
}
CLOUDFLARE_HTML = (
    "<!DOCTYPE html><html><head><title>api.coingecko.com | 502: Bad gateway</title></head>"
    "<body><h1>Bad gateway</h1><p>Error code 502</p><p>Cloudflare Ray ID: 8a1b2c3d4e5f6a7b</p>"
    "<p>Performance &amp; security by Cloudflare</p></body></html>"
)

_COINS = {c.coin_id: c for c in DEFAULT_COINS}
_DAY_S = 86_400
# Real chart points are not exactly on the grid: they are stamped a few seconds after it.
_POINT_OFFSET_S = 12.345


@dataclass(frozen=True)
class Reply:
    """A scripted response. ``body``: dict/list -> JSON, str -> text, bytes -> as is."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering, to provoke client timeouts


def html_page(status: int = 200) -> Reply:
    """The Cloudflare-style HTML error page a proxy serves instead of JSON."""
    return Reply(status, CLOUDFLARE_HTML, {"Content-Type": "text/html; charset=UTF-8"})


@dataclass(frozen=True)
class RecordedRequest:
    path: str  # relative to /api/v3, as received (percent-encoded)
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    received_at: float  # time.monotonic() on arrival


def price_at(coin_id: str, t_s: float) -> float:
    """The fake's deterministic USD price of ``coin_id`` at unix time ``t_s``."""
    coin = _COINS[coin_id]
    phase = list(_COINS).index(coin_id)
    return round(coin.base_price * (1 + 0.03 * math.sin(t_s / 5_400 + phase)), 8)


def markets_item(coin: Coin, rank: int) -> dict[str, Any]:
    """One /coins/markets entry, with every field the real API returns."""
    price = price_at(coin.coin_id, LAST_UPDATED_S)
    day_ago = price_at(coin.coin_id, LAST_UPDATED_S - _DAY_S)
    market_cap = round(price * coin.supply)
    return {
        "id": coin.coin_id,
        "symbol": coin.symbol.lower(),
        "name": coin.coin_id.replace("-", " ").title(),
        "image": f"https://coin-images.coingecko.com/coins/images/{rank}/large/{coin.coin_id}.png",
        "current_price": price,
        "market_cap": market_cap,
        "market_cap_rank": rank,
        "fully_diluted_valuation": market_cap,
        "total_volume": round(coin.base_volume * 24),
        "high_24h": round(price * 1.03, 8),
        "low_24h": round(price * 0.97, 8),
        "price_change_24h": round(price - day_ago, 8),
        "price_change_percentage_24h": round((price / day_ago - 1) * 100, 5),
        "market_cap_change_24h": round((price - day_ago) * coin.supply),
        "market_cap_change_percentage_24h": round((price / day_ago - 1) * 100, 5),
        "circulating_supply": coin.supply,
        "total_supply": coin.supply,
        "max_supply": None,
        "ath": round(price * 1.8, 8),
        "ath_change_percentage": -44.44,
        "ath_date": "2024-03-14T07:10:36.635Z",
        "atl": round(price * 0.01, 8),
        "atl_change_percentage": 9900.0,
        "atl_date": "2015-10-20T00:00:00.000Z",
        "roi": None,
        "last_updated": LAST_UPDATED,
    }


def markets_body(coin_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The /coins/markets answer for ``coin_ids``: known ids only, by market cap, like the API."""
    ranked = sorted(_COINS.values(), key=lambda c: -price_at(c.coin_id, LAST_UPDATED_S) * c.supply)
    wanted = set(coin_ids)
    return [markets_item(c, rank) for rank, c in enumerate(ranked, start=1) if c.coin_id in wanted]


def chart_step_s(span_s: float) -> int:
    """CoinGecko's automatic granularity: 5-minute up to 1 day, hourly up to 90 days, else daily."""
    if span_s <= _DAY_S:
        return 300
    if span_s <= 90 * _DAY_S:
        return 3_600
    return _DAY_S


def chart_body(coin_id: str, from_s: float, to_s: float) -> dict[str, list[list[float]]]:
    """The /coins/{id}/market_chart/range answer: points in [from_s, to_s], both inclusive."""
    step = chart_step_s(to_s - from_s)
    offset = 0.0 if step == _DAY_S else _POINT_OFFSET_S  # daily points sit at 00:00 UTC
    coin = _COINS[coin_id]
    body: dict[str, list[list[float]]] = {"prices": [], "market_caps": [], "total_volumes": []}
    t = math.ceil((from_s - offset) / step) * step + offset
    while t <= to_s:
        price = price_at(coin_id, t)
        ms = int(round(t * 1000))
        body["prices"].append([ms, price])
        body["market_caps"].append([ms, round(price * coin.supply, 2)])
        body["total_volumes"].append([ms, round(coin.base_volume * 24 * (1 + 0.1 * math.cos(t / 7_200)), 2)])
        t += step
    return body


class FakeCoinGecko:
    """The fake API on 127.0.0.1 (free port) in a background thread; use as a context manager.

    ``required_key=("x-cg-demo-api-key", "KEY")`` makes every default answer demand that header,
    answering 401 like the real API when it is missing or wrong.
    """

    def __init__(self, required_key: tuple[str, str] | None = None) -> None:
        self.required_key = required_key
        self._lock = threading.Lock()
        self._queued: defaultdict[str, deque[Reply]] = defaultdict(deque)
        self._requests: list[RecordedRequest] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        # A short poll interval keeps shutdown (once per test) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-coingecko", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{API_PREFIX}"

    def __enter__(self) -> FakeCoinGecko:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def queue(self, path: str, replies: Iterable[Reply | tuple[int, Mapping[str, str], Any]]) -> None:
        """Serve ``replies`` (``Reply`` or ``(status, headers, body)``) for ``path`` before its normal answer."""
        with self._lock:
            for reply in replies:
                self._queued[path].append(reply if isinstance(reply, Reply) else Reply(reply[0], reply[2], reply[1]))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def _respond(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Reply:
        with self._lock:
            self._requests.append(RecordedRequest(path, query, headers, time.monotonic()))
            if self._queued[path]:
                return self._queued[path].popleft()
        if self.required_key is not None:
            name, key = self.required_key
            if name not in headers:
                return Reply(401, AUTH_MISSING_BODY)
            if headers[name] != key:
                return Reply(401, AUTH_INVALID_BODY)
        return _default_reply(path, query)


def _default_reply(path: str, query: dict[str, str]) -> Reply:
    parts = path.split("/")  # "/coins/markets" -> ["", "coins", "markets"]
    if "vs_currency" not in query and path.startswith("/coins/"):
        return Reply(400, {"error": "Missing parameter vs_currency"})
    if path == "/coins/markets":
        ids = [i for i in query.get("ids", "").split(",") if i]
        per_page = int(query.get("per_page", "100"))
        page = int(query.get("page", "1"))
        return Reply(200, markets_body(ids)[(page - 1) * per_page : page * per_page])
    if len(parts) == 5 and parts[1] == "coins" and parts[3:] == ["market_chart", "range"]:
        coin_id = unquote(parts[2])
        if coin_id not in _COINS:
            return Reply(404, COIN_NOT_FOUND_BODY)
        if "from" not in query or "to" not in query:
            return Reply(400, {"error": "Missing parameter from or to"})
        return Reply(200, chart_body(coin_id, float(query["from"]), float(query["to"])))
    return Reply(404, {"error": "Not Found"})


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path[len(API_PREFIX) :] if url.path.startswith(API_PREFIX) else url.path
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.server.fake._respond(path, query, headers)  # type: ignore[attr-defined]
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if isinstance(reply.body, (dict, list)):
            payload, content_type = json.dumps(reply.body).encode(), "application/json; charset=utf-8"
        elif isinstance(reply.body, str):
            payload, content_type = reply.body.encode(), "text/plain; charset=utf-8"
        else:
            payload, content_type = reply.body or b"", "application/octet-stream"
        try:
            self.send_response(reply.status)
            extra = {k.lower(): v for k, v in reply.headers.items()}
            self.send_header("Content-Type", extra.pop("content-type", content_type))
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (timeout tests)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean
