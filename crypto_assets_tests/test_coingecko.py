"""CoinGecko client and source, over real HTTP against the local fake API (no network)."""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from crypto_assets.market.coingecko import (
    CoinGeckoAuthError,
    CoinGeckoClient,
    CoinGeckoError,
    CoinGeckoNotFoundError,
    CoinGeckoResponseError,
    CoinGeckoRetriesExhausted,
    CoinGeckoSettings,
    fetch_coingecko_window,
)
from crypto_assets.market.schema import QUARANTINE_COLUMN_NAMES, SNAPSHOT_COLUMN_NAMES
from crypto_assets_tests.fake_coingecko import (
    AUTH_MISSING_BODY,
    RATE_LIMITED_BODY,
    FakeCoinGecko,
    Reply,
    chart_body,
    html_page,
    markets_body,
)

SECRET = "CG-SECRET-test-123"
T0 = datetime(2024, 5, 1, tzinfo=UTC)
T0_S = int(T0.timestamp())
MARKETS = "/coins/markets"
BTC_CHART = "/coins/bitcoin/market_chart/range"


class FakeClock:
    """A monotonic clock that only moves when slept on; records every sleep."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def server() -> Iterator[FakeCoinGecko]:
    with FakeCoinGecko() as fake:
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


MakeClient = Callable[..., CoinGeckoClient]


@pytest.fixture
def make_client(server: FakeCoinGecko, clock: FakeClock) -> Iterator[MakeClient]:
    """Clients on the fake clock; a very high rate limit so only the tests about it see its sleeps."""
    clients: list[CoinGeckoClient] = []

    def make(**overrides: Any) -> CoinGeckoClient:
        fields: dict[str, Any] = {
            "base_url": server.base_url,
            "coin_ids": ("bitcoin", "ethereum"),
            "requests_per_minute": 60_000.0,
            "timeout_s": 2.0,
            "max_attempts": 4,
            "backoff_base_s": 0.5,
            "backoff_max_s": 8.0,
        }
        fields.update(overrides)
        client = CoinGeckoClient(CoinGeckoSettings(**fields), sleep=clock.sleep, clock=clock)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def naive_utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).replace(tzinfo=None)


def expected_hours(coin_id: str, from_s: int, to_s: int) -> dict[datetime, dict[str, Any]]:
    """Hourly aggregation of the fake's chart points in [from_s, to_s), computed independently."""
    body = chart_body(coin_id, from_s, to_s)
    hours: dict[datetime, list[int]] = {}
    for i, (ms, _) in enumerate(body["prices"]):
        if ms < to_s * 1000:
            hours.setdefault(naive_utc(ms).replace(minute=0, second=0, microsecond=0), []).append(i)
    out = {}
    for hour, idx in hours.items():
        prices = [body["prices"][i][1] for i in idx]
        several = len(idx) >= 2
        out[hour] = {
            "observed_at": naive_utc(body["prices"][idx[-1]][0]),
            "price": prices[-1],
            "open": prices[0] if several else None,
            "high": max(prices) if several else None,
            "low": min(prices) if several else None,
            "market_cap": body["market_caps"][idx[-1]][1],
            "volume_quote": body["total_volumes"][idx[-1]][1],
        }
    return out


def assert_row_matches(row: pd.Series, expected: dict[str, Any]) -> None:
    assert row["observed_at"] == expected["observed_at"]
    for column in ("price", "open", "high", "low", "market_cap", "volume_quote"):
        if expected[column] is None:
            assert pd.isna(row[column]), column
        else:
            assert row[column] == pytest.approx(expected[column]), column


# --- happy paths ---------------------------------------------------------------------------------


def test_markets_normalizes_items_and_sends_params(server: FakeCoinGecko, make_client: MakeClient) -> None:
    client = make_client()
    items = client.markets(["bitcoin", "ethereum"])
    by_id = {i["coin_id"]: i for i in items}
    assert set(by_id) == {"bitcoin", "ethereum"}
    btc = by_id["bitcoin"]
    assert btc["symbol"] == "BTC"
    assert btc["price"] == markets_body(["bitcoin"])[0]["current_price"]
    assert btc["observed_at"] == datetime(2024, 5, 1, 12, 34, 56, 789_000)
    assert btc["observed_at"].tzinfo is None
    assert isinstance(btc["market_cap"], float) and isinstance(btc["volume_quote"], float)
    (request,) = server.requests
    assert request.path == MARKETS
    assert request.query == {"vs_currency": "usd", "ids": "bitcoin,ethereum", "per_page": "250", "page": "1"}
    assert client.request_count == 1 and client.retry_count == 0


def test_market_chart_range_returns_typed_points(server: FakeCoinGecko, make_client: MakeClient) -> None:
    client = make_client()
    frame = client.market_chart_range("bitcoin", T0, T0 + timedelta(hours=2))
    assert list(frame.columns) == ["observed_at", "price", "market_cap", "volume_quote"]
    assert str(frame["observed_at"].dtype) == "datetime64[us]"
    assert len(frame) == 24  # 5-minute points for a range within a day
    body = chart_body("bitcoin", T0_S, T0_S + 7200)
    assert frame["observed_at"].iloc[0] == naive_utc(body["prices"][0][0])
    assert frame["price"].tolist() == [p for _, p in body["prices"]]
    assert server.requests[0].query == {"vs_currency": "usd", "from": str(T0_S), "to": str(T0_S + 7200)}


def test_window_with_five_minute_points_aggregates_hourly(server: FakeCoinGecko, make_client: MakeClient) -> None:
    client = make_client()
    batch = fetch_coingecko_window(client, T0, T0 + timedelta(hours=3))

    snaps = batch.snapshots
    assert list(snaps.columns) == SNAPSHOT_COLUMN_NAMES
    assert {c: str(snaps[c].dtype) for c in ("observed_at", "partition_hour", "ingested_at")} == dict.fromkeys(
        ("observed_at", "partition_hour", "ingested_at"), "datetime64[us]"
    )
    assert snaps["price"].dtype == "float64"
    assert len(snaps) == 6
    assert set(snaps["source"]) == {"coingecko"}
    assert set(zip(snaps["coin_id"], snaps["symbol"], strict=True)) == {("bitcoin", "BTC"), ("ethereum", "ETH")}
    assert snaps["partition_hour"].tolist() == sorted(snaps["partition_hour"].tolist())
    assert snaps["ingested_at"].notna().all()
    for coin_id in ("bitcoin", "ethereum"):
        rows = snaps[snaps["coin_id"] == coin_id].set_index("partition_hour")
        expected = expected_hours(coin_id, T0_S, T0_S + 3 * 3600)
        assert sorted(rows.index) == sorted(expected) == [datetime(2024, 5, 1, h) for h in range(3)]
        for hour, values in expected.items():
            assert_row_matches(rows.loc[hour], values)
            assert rows.loc[hour, "open"] != rows.loc[hour, "price"]  # a real range, not the close

    assert list(batch.quarantine.columns) == QUARANTINE_COLUMN_NAMES and batch.quarantine.empty
    assert batch.ground_truth.empty
    assert batch.stats == {
        "requests": 3,
        "retries": 0,
        "points_read": 72,
        "points_out_of_window": 0,
        "rows_written": 6,
        "quarantined": 0,
        "coins_requested": 2,
        "coins_returned": 2,
        "coins_without_price": 0,
    }


def test_window_with_hourly_points_leaves_open_high_low_null(make_client: MakeClient) -> None:
    batch = fetch_coingecko_window(make_client(coin_ids=("solana",)), T0, T0 + timedelta(days=2))
    snaps = batch.snapshots.set_index("partition_hour")
    expected = expected_hours("solana", T0_S, T0_S + 2 * 86_400)
    assert len(snaps) == len(expected) == 48
    for hour, values in expected.items():
        assert values["open"] is None
        assert_row_matches(snaps.loc[hour], values)
    assert snaps["observed_at"].iloc[0] == datetime(2024, 5, 1, 0, 0, 12, 345_000)


def test_long_backfill_is_fetched_in_hourly_chunks(server: FakeCoinGecko, make_client: MakeClient) -> None:
    end = T0 + timedelta(days=100)
    batch = fetch_coingecko_window(make_client(coin_ids=("bitcoin",)), T0, end)
    snaps = batch.snapshots
    # One request for all 100 days would get daily points; 90 + 10 days stay hourly.
    assert len(snaps) == 100 * 24
    assert snaps["partition_hour"].is_unique
    chart_queries = [r.query for r in server.requests if r.path == BTC_CHART]
    split_s = T0_S + 90 * 86_400
    assert [(q["from"], q["to"]) for q in chart_queries] == [
        (str(T0_S), str(split_s)),
        (str(split_s), str(int(end.timestamp()))),
    ]


def test_window_rejects_bad_bounds(make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(ValueError, match="start must be on an hour boundary"):
        fetch_coingecko_window(client, T0 + timedelta(minutes=5), T0 + timedelta(hours=1))
    with pytest.raises(ValueError, match="end must be after start"):
        fetch_coingecko_window(client, T0, T0)
    assert client.request_count == 0


# --- API key headers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "header", "other"),
    [("demo", "x-cg-demo-api-key", "x-cg-pro-api-key"), ("pro", "x-cg-pro-api-key", "x-cg-demo-api-key")],
)
def test_api_key_header_depends_on_plan(plan: str, header: str, other: str, clock: FakeClock) -> None:
    with FakeCoinGecko(required_key=(header, SECRET)) as fake:
        settings = CoinGeckoSettings(base_url=fake.base_url, api_key=SECRET, api_plan=plan, coin_ids=("bitcoin",))
        client = CoinGeckoClient(settings, sleep=clock.sleep, clock=clock)
        assert [m["coin_id"] for m in client.markets(["bitcoin"])] == ["bitcoin"]
        (request,) = fake.requests
    assert request.headers[header] == SECRET
    assert other not in request.headers
    assert request.headers["accept"] == "application/json"


def test_no_key_sends_no_key_header(server: FakeCoinGecko, make_client: MakeClient) -> None:
    make_client().markets(["bitcoin"])
    headers = server.requests[0].headers
    assert "x-cg-demo-api-key" not in headers and "x-cg-pro-api-key" not in headers


# --- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_headers", "expected_sleep"),
    [
        ({"Retry-After": "1"}, 1.0),
        ({"Retry-After": "3.5"}, 3.5),
        ({"Retry-After": "120"}, 8.0),  # capped at backoff_max_s
        ({}, 0.5),  # no header: exponential backoff, first step
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.5),
    ],
)
def test_429_then_success_honours_retry_after(
    server: FakeCoinGecko,
    make_client: MakeClient,
    clock: FakeClock,
    retry_headers: dict[str, str],
    expected_sleep: float,
) -> None:
    server.queue(MARKETS, [(429, retry_headers, RATE_LIMITED_BODY)])
    client = make_client()
    assert len(client.markets(["bitcoin"])) == 1
    assert clock.sleeps == [expected_sleep]
    assert client.request_count == 2 and client.retry_count == 1


def test_server_errors_then_success_back_off_exponentially(
    server: FakeCoinGecko, make_client: MakeClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    server.queue(BTC_CHART, [(500, {}, {"error": "internal"}), html_page(502), (503, {}, "Service Unavailable")])
    client = make_client()
    with caplog.at_level(logging.WARNING):
        frame = client.market_chart_range("bitcoin", T0, T0 + timedelta(hours=1))
    assert len(frame) == 12
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert client.request_count == 4 and client.retry_count == 3
    assert "HTTP 502" in caplog.text and BTC_CHART in caplog.text


def test_timeout_then_success(server: FakeCoinGecko, make_client: MakeClient, clock: FakeClock) -> None:
    server.queue(MARKETS, [Reply(200, markets_body(["bitcoin"]), delay_s=0.6)])
    client = make_client(timeout_s=0.2)
    started = time.monotonic()
    assert [m["coin_id"] for m in client.markets(["bitcoin"])] == ["bitcoin"]
    assert time.monotonic() - started < 0.6  # the slow answer was abandoned, not waited for
    assert clock.sleeps == [0.5]
    assert client.request_count == 2 and client.retry_count == 1


def test_retries_exhausted_names_path_attempts_and_last_failure(
    server: FakeCoinGecko, make_client: MakeClient, clock: FakeClock
) -> None:
    server.queue(MARKETS, [(500, {}, {"error": "internal"})] * 4 + [html_page(502)])
    client = make_client(max_attempts=5, backoff_max_s=2.0)
    with pytest.raises(CoinGeckoRetriesExhausted) as info:
        client.markets(["bitcoin"])
    message = str(info.value)
    assert MARKETS in message and "5 attempts" in message
    assert "HTTP 502" in message and "text/html" in message
    assert clock.sleeps == [0.5, 1.0, 2.0, 2.0]  # exponential, capped at backoff_max_s
    assert client.request_count == 5 and client.retry_count == 4


def test_connection_errors_are_retried_then_exhausted(clock: FakeClock) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = CoinGeckoSettings(
        base_url=f"http://127.0.0.1:{port}/api/v3", requests_per_minute=6_000, max_attempts=3, backoff_base_s=0.25
    )
    client = CoinGeckoClient(settings, sleep=clock.sleep, clock=clock)
    with pytest.raises(CoinGeckoRetriesExhausted, match="connection failed") as info:
        client.markets(["bitcoin"])
    assert MARKETS in str(info.value) and "3 attempts" in str(info.value)
    assert clock.sleeps == [0.25, 0.5]  # backoff only: it already exceeds the rate-limit spacing


# --- errors that are not retried -----------------------------------------------------------------


def test_missing_key_is_an_auth_error(clock: FakeClock) -> None:
    with FakeCoinGecko(required_key=("x-cg-pro-api-key", SECRET)) as fake:
        settings = CoinGeckoSettings(base_url=fake.base_url, api_plan="pro")
        client = CoinGeckoClient(settings, sleep=clock.sleep, clock=clock)
        with pytest.raises(CoinGeckoAuthError) as info:
            client.markets(["bitcoin"])
    message = str(info.value)
    for part in (MARKETS, "HTTP 401", "missing", "'pro' plan", "COINGECKO_API_KEY", "API Key Missing"):
        assert part in message
    assert client.request_count == 1


def test_wrong_key_and_403_are_auth_errors(clock: FakeClock) -> None:
    with FakeCoinGecko(required_key=("x-cg-demo-api-key", "the-right-key")) as fake:
        settings = CoinGeckoSettings(base_url=fake.base_url, api_key=SECRET)
        client = CoinGeckoClient(settings, sleep=clock.sleep, clock=clock)
        with pytest.raises(CoinGeckoAuthError, match="invalid") as wrong:
            client.markets(["bitcoin"])
        fake.queue(MARKETS, [(403, {}, AUTH_MISSING_BODY)])
        with pytest.raises(CoinGeckoAuthError, match="HTTP 403"):
            client.markets(["bitcoin"])
    assert "Invalid API Key" in str(wrong.value)
    assert client.request_count == 2


def test_unknown_coin_on_chart_is_not_found(make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(CoinGeckoNotFoundError) as info:
        client.market_chart_range("no-such-coin", T0, T0 + timedelta(hours=1))
    assert "coin not found" in str(info.value)
    assert "/coins/no-such-coin/market_chart/range" in str(info.value)
    assert client.request_count == 1


def test_coin_id_is_percent_encoded_in_the_path(server: FakeCoinGecko, make_client: MakeClient) -> None:
    with pytest.raises(CoinGeckoNotFoundError):
        make_client().market_chart_range("a/b c?x", T0, T0 + timedelta(hours=1))
    assert server.paths() == ["/coins/a%2Fb%20c%3Fx/market_chart/range"]
    assert set(server.requests[0].query) == {"vs_currency", "from", "to"}


def test_other_client_errors_are_not_retried(server: FakeCoinGecko, make_client: MakeClient) -> None:
    server.queue(MARKETS, [(400, {}, {"error": "invalid vs_currency"})])
    client = make_client()
    with pytest.raises(CoinGeckoError, match="HTTP 400.*invalid vs_currency") as info:
        client.markets(["bitcoin"])
    assert type(info.value) is CoinGeckoError
    assert client.request_count == 1


# --- malformed responses -------------------------------------------------------------------------


def test_html_page_with_status_200_is_a_response_error(server: FakeCoinGecko, make_client: MakeClient) -> None:
    server.queue(MARKETS, [html_page(200)])
    client = make_client()
    with pytest.raises(CoinGeckoResponseError, match="expected JSON") as info:
        client.markets(["bitcoin"])
    assert MARKETS in str(info.value) and "text/html" in str(info.value) and "Cloudflare" in str(info.value)
    assert client.request_count == 1


def test_invalid_json_is_a_response_error(server: FakeCoinGecko, make_client: MakeClient) -> None:
    server.queue(MARKETS, [Reply(200, b'[{"id": "bitcoin",', {"Content-Type": "application/json"})])
    with pytest.raises(CoinGeckoResponseError, match="not valid JSON"):
        make_client().markets(["bitcoin"])


def test_markets_wrong_top_level_shape(server: FakeCoinGecko, make_client: MakeClient) -> None:
    server.queue(MARKETS, [(200, {}, {"bitcoin": {"usd": 1.0}})])
    with pytest.raises(CoinGeckoResponseError, match="expected a JSON list, got an object"):
        make_client().markets(["bitcoin"])


@pytest.mark.parametrize("missing", ["id", "symbol", "current_price", "last_updated"])
def test_markets_missing_field_is_named(server: FakeCoinGecko, make_client: MakeClient, missing: str) -> None:
    body = markets_body(["bitcoin"])
    del body[0][missing]
    server.queue(MARKETS, [(200, {}, body)])
    with pytest.raises(CoinGeckoResponseError, match=f"missing field '{missing}'") as info:
        make_client().markets(["bitcoin"])
    assert MARKETS in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("current_price", "abc", "'current_price' is not a number: 'abc'"),
        ("market_cap", "abc", "'market_cap' is not a number: 'abc'"),
        ("total_volume", [1], "'total_volume' is not a number"),
        ("symbol", 42, "'symbol' should be str"),
        ("last_updated", "yesterday", "'last_updated' is not an ISO timestamp"),
    ],
)
def test_markets_bad_value_is_named(
    server: FakeCoinGecko, make_client: MakeClient, name: str, value: Any, message: str
) -> None:
    body = markets_body(["bitcoin"])
    body[0][name] = value
    server.queue(MARKETS, [(200, {}, body)])
    with pytest.raises(CoinGeckoResponseError, match=message) as info:
        make_client().markets(["bitcoin"])
    assert "id='bitcoin'" in str(info.value)


def test_chart_missing_series_is_named(server: FakeCoinGecko, make_client: MakeClient) -> None:
    body = chart_body("bitcoin", T0_S, T0_S + 3600)
    del body["total_volumes"]
    server.queue(BTC_CHART, [(200, {}, body)])
    with pytest.raises(CoinGeckoResponseError, match="missing field 'total_volumes'") as info:
        make_client().market_chart_range("bitcoin", T0, T0 + timedelta(hours=1))
    assert BTC_CHART in str(info.value)


@pytest.mark.parametrize(
    ("series", "point", "message"),
    [
        ("prices", [1714521612345, "abc"], r"prices\[1\] value' is not a number: 'abc'"),
        ("market_caps", ["soon", 1.0], r"market_caps\[1\] timestamp' is not a number"),
        ("total_volumes", [1714521612345, 1.0, 2.0], r"total_volumes\[1\] should be a \[timestamp_ms, value\] pair"),
        ("prices", {"t": 1}, r"prices\[1\] should be a \[timestamp_ms, value\] pair"),
    ],
)
def test_chart_bad_point_is_named(
    server: FakeCoinGecko, make_client: MakeClient, series: str, point: Any, message: str
) -> None:
    body = chart_body("bitcoin", T0_S, T0_S + 3600)
    body[series][1] = point
    server.queue(BTC_CHART, [(200, {}, body)])
    with pytest.raises(CoinGeckoResponseError, match=message):
        make_client().market_chart_range("bitcoin", T0, T0 + timedelta(hours=1))


def test_chart_timestamps_out_of_range(server: FakeCoinGecko, make_client: MakeClient) -> None:
    body = chart_body("bitcoin", T0_S, T0_S + 3600)
    body["prices"][0][0] = 1e30
    server.queue(BTC_CHART, [(200, {}, body)])
    with pytest.raises(CoinGeckoResponseError, match="'prices' has timestamps out of range"):
        make_client().market_chart_range("bitcoin", T0, T0 + timedelta(hours=1))


def test_non_numeric_price_fails_the_window(server: FakeCoinGecko, make_client: MakeClient) -> None:
    body = chart_body("bitcoin", T0_S, T0_S + 3600)
    body["prices"][3][1] = "abc"
    server.queue(BTC_CHART, [(200, {}, body)])
    with pytest.raises(CoinGeckoResponseError, match="not a number: 'abc'"):
        fetch_coingecko_window(make_client(coin_ids=("bitcoin",)), T0, T0 + timedelta(hours=1))


# --- quarantine ----------------------------------------------------------------------------------


def test_bad_price_points_are_quarantined_with_reason(server: FakeCoinGecko, make_client: MakeClient) -> None:
    def ms(minutes: int) -> int:
        return (T0_S + minutes * 60) * 1000

    prices = [
        [ms(-5), 90.0],  # before the window
        [ms(10), 0.0],
        [ms(20), 100.0],
        [ms(30), None],
        [ms(40), -5.0],
        [ms(65), 200.0],
        [ms(120), 300.0],  # exactly at the (exclusive) window end
    ]
    body = {
        "prices": prices,
        "market_caps": [[t, 1e9] for t, _ in prices],
        "total_volumes": [[t, 5e6] for t, _ in prices],
    }
    server.queue(BTC_CHART, [(200, {}, body)])
    batch = fetch_coingecko_window(make_client(coin_ids=("bitcoin",)), T0, T0 + timedelta(hours=2))

    snaps = batch.snapshots
    assert snaps["price"].tolist() == [100.0, 200.0]
    assert snaps["partition_hour"].tolist() == [datetime(2024, 5, 1, 0), datetime(2024, 5, 1, 1)]
    assert snaps[["open", "high", "low"]].isna().all().all()  # one good point per hour

    q = batch.quarantine
    assert list(q.columns) == QUARANTINE_COLUMN_NAMES
    assert q["reason"].tolist() == ["non_positive_price", "missing_price", "non_positive_price"]
    assert q["raw_record"].tolist() == [f"[{ms(10)}, 0.0]", f"[{ms(30)}, null]", f"[{ms(40)}, -5.0]"]
    assert set(q["source_ref"]) == {"coingecko:/coins/bitcoin/market_chart/range"}
    assert set(q["source"]) == {"coingecko"} and set(q["coin_id"]) == {"bitcoin"}
    assert set(q["partition_hour"]) == {datetime(2024, 5, 1, 0)}
    assert q["observed_at"].tolist() == [datetime(2024, 5, 1, 0, m) for m in (10, 30, 40)]
    assert q["ingested_at"].notna().all()
    assert batch.stats["points_read"] == 7
    assert batch.stats["points_out_of_window"] == 2
    assert batch.stats["quarantined"] == 3 and batch.stats["rows_written"] == 2


def test_coin_without_points_yields_no_rows(server: FakeCoinGecko, make_client: MakeClient) -> None:
    server.queue(BTC_CHART, [(200, {}, {"prices": [], "market_caps": [], "total_volumes": []})])
    batch = fetch_coingecko_window(make_client(), T0, T0 + timedelta(hours=2))
    assert set(batch.snapshots["coin_id"]) == {"ethereum"} and len(batch.snapshots) == 2
    assert batch.quarantine.empty


def test_all_points_rejected_gives_empty_typed_snapshots(server: FakeCoinGecko, make_client: MakeClient) -> None:
    body = chart_body("bitcoin", T0_S, T0_S + 3600)
    body["prices"] = [[ms, 0] for ms, _ in body["prices"]]
    server.queue(BTC_CHART, [(200, {}, body)])
    batch = fetch_coingecko_window(make_client(coin_ids=("bitcoin",)), T0, T0 + timedelta(hours=1))
    assert batch.snapshots.empty and list(batch.snapshots.columns) == SNAPSHOT_COLUMN_NAMES
    assert str(batch.snapshots["partition_hour"].dtype) == "datetime64[us]"
    assert len(batch.quarantine) == 12 and batch.stats["rows_written"] == 0


def test_unknown_coin_id_is_quarantined_not_fetched(server: FakeCoinGecko, make_client: MakeClient) -> None:
    batch = fetch_coingecko_window(make_client(coin_ids=("bitcoin", "not-a-coin")), T0, T0 + timedelta(hours=1))
    assert set(batch.snapshots["coin_id"]) == {"bitcoin"}
    (row,) = batch.quarantine.to_dict("records")
    assert row["reason"] == "unknown_coin_id" and row["coin_id"] == "not-a-coin"
    assert row["source_ref"] == "coingecko:/coins/markets" and "not-a-coin" in row["detail"]
    assert row["partition_hour"] == T0.replace(tzinfo=None)  # the window that found it: a re-run replaces it
    assert server.paths() == [MARKETS, BTC_CHART]
    assert server.requests[0].query["ids"] == "bitcoin,not-a-coin"
    assert batch.stats["coins_requested"] == 2 and batch.stats["coins_returned"] == 1


@pytest.mark.parametrize("price", [None, 0])
def test_a_coin_without_a_current_price_is_quarantined_and_the_others_land(
    server: FakeCoinGecko, make_client: MakeClient, price: Any
) -> None:
    body = markets_body(["bitcoin", "ethereum"])
    next(item for item in body if item["id"] == "ethereum")["current_price"] = price
    server.queue(MARKETS, [(200, {}, body)])
    batch = fetch_coingecko_window(make_client(coin_ids=("bitcoin", "ethereum")), T0, T0 + timedelta(hours=1))
    assert set(batch.snapshots["coin_id"]) == {"bitcoin"}
    (row,) = batch.quarantine.to_dict("records")
    assert (row["coin_id"], row["reason"]) == ("ethereum", "no_current_price")
    assert "chart was not fetched" in row["detail"] and row["partition_hour"] == T0.replace(tzinfo=None)
    assert server.paths() == [MARKETS, BTC_CHART]  # no chart asked for the dead coin
    assert batch.stats["coins_without_price"] == 1


def test_window_stats_count_retries(server: FakeCoinGecko, make_client: MakeClient) -> None:
    server.queue(MARKETS, [(429, {"Retry-After": "1"}, RATE_LIMITED_BODY)])
    client = make_client(coin_ids=("bitcoin",))
    client.markets(["ethereum"])  # earlier traffic on the same client is not this window's
    batch = fetch_coingecko_window(client, T0, T0 + timedelta(hours=1))
    assert batch.stats["requests"] == 2 and batch.stats["retries"] == 0
    server.queue(MARKETS, [(429, {"Retry-After": "1"}, RATE_LIMITED_BODY)])
    batch = fetch_coingecko_window(client, T0, T0 + timedelta(hours=1))
    assert batch.stats["requests"] == 3 and batch.stats["retries"] == 1


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field_name"),
    [
        ({"api_plan": "enterprise"}, "api_plan"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"requests_per_minute": -5}, "requests_per_minute"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"coin_ids": ()}, "coin_ids"),
        ({"coin_ids": ("bitcoin", "")}, "coin_ids"),
        ({"base_url": "ftp://api.coingecko.com/api/v3"}, "base_url"),
        ({"base_url": "api.coingecko.com/api/v3"}, "base_url"),
        ({"base_url": "https:///api/v3"}, "base_url"),
        ({"backoff_base_s": -1}, "backoff_base_s"),
        ({"backoff_max_s": -1}, "backoff_max_s"),
        ({"vs_currency": ""}, "vs_currency"),
    ],
)
def test_settings_validation_names_the_field(overrides: dict[str, Any], field_name: str) -> None:
    with pytest.raises(ValueError, match=field_name):
        CoinGeckoSettings(**overrides)


def test_settings_defaults() -> None:
    settings = CoinGeckoSettings(coin_ids=["bitcoin"])  # type: ignore[arg-type]
    assert settings.coin_ids == ("bitcoin",)
    assert {settings} == {CoinGeckoSettings(coin_ids=("bitcoin",))}  # hashable: a list became a tuple
    assert "bitcoin" in CoinGeckoSettings().coin_ids and len(CoinGeckoSettings().coin_ids) == 20


# --- the API key never leaks ---------------------------------------------------------------------


def test_api_key_never_appears_in_repr_errors_or_logs(caplog: pytest.LogCaptureFixture, clock: FakeClock) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 logs every request at DEBUG
    with FakeCoinGecko(required_key=("x-cg-demo-api-key", "another-key")) as fake:
        settings = CoinGeckoSettings(base_url=fake.base_url, api_key=SECRET, max_attempts=2, coin_ids=("bitcoin",))
        client = CoinGeckoClient(settings, sleep=clock.sleep, clock=clock)
        errors: list[BaseException] = []
        # A wrong key (401), then bodies that echo the key back in every kind of failure.
        for replies in (
            [],
            [(400, {}, {"error": f"bad key {SECRET}"})],
            [(500, {}, f"oops {SECRET}")] * 2,
            [Reply(200, f"<html>{SECRET}</html>", {"Content-Type": "text/html"})],
            [Reply(200, f"not json {SECRET}".encode(), {"Content-Type": "application/json"})],
        ):
            fake.queue(MARKETS, replies)
            with pytest.raises(CoinGeckoError) as info:
                client.markets(["bitcoin"])
            errors.append(info.value)
        with pytest.raises(CoinGeckoError) as info:
            fetch_coingecko_window(client, T0, T0 + timedelta(hours=1))
        errors.append(info.value)
    assert [type(e) for e in errors] == [
        CoinGeckoAuthError,
        CoinGeckoError,
        CoinGeckoRetriesExhausted,
        CoinGeckoResponseError,
        CoinGeckoResponseError,
        CoinGeckoAuthError,
    ]
    assert "***" in str(errors[1])  # the echoed key was redacted, the rest of the message kept
    texts = [repr(settings), str(settings), repr(client), caplog.text]
    texts += [str(e) for e in errors] + ["".join(traceback.format_exception(e)) for e in errors]
    for text in texts:
        assert SECRET not in text
    assert "CG-SECRET" not in caplog.text


# --- rate limiting -------------------------------------------------------------------------------


def test_rate_limit_spacing_with_fake_clock(make_client: MakeClient, clock: FakeClock) -> None:
    client = make_client(requests_per_minute=60)
    for _ in range(3):
        client.markets(["bitcoin"])
    assert clock.sleeps == [1.0, 1.0]
    clock.now += 0.4  # time spent elsewhere counts towards the spacing
    client.markets(["bitcoin"])
    assert clock.sleeps[2] == pytest.approx(0.6)
    clock.now += 5
    client.markets(["bitcoin"])
    assert len(clock.sleeps) == 3


def test_rate_limit_spacing_is_seen_by_the_server(server: FakeCoinGecko) -> None:
    settings = CoinGeckoSettings(base_url=server.base_url, requests_per_minute=600)  # 0.1 s apart
    client = CoinGeckoClient(settings)
    for _ in range(6):
        client.markets(["bitcoin"])
    arrivals = [r.received_at for r in server.requests]
    # Each arrival may be late by the scheduler's whim (a busy machine), never early: the limiter spaces
    # the sends, so the five gaps add up to at least 0.5 s whatever the jitter of any one of them.
    assert arrivals[-1] - arrivals[0] >= 0.4, arrivals  # one interval of slack for the first connection
