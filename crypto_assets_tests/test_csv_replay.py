"""The csv replay source: every quirk of CryptoDataDownload exports, the plain format, windows."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from crypto_assets.assets import ingestion
from crypto_assets.market import csv_replay
from crypto_assets.market.anomalies import inject_anomalies
from crypto_assets.market.csv_replay import FileReport, csv_window, load_market_files
from crypto_assets.market.schema import (
    GROUND_TRUTH_COLUMNS,
    QUARANTINE_COLUMN_NAMES,
    QUARANTINE_COLUMNS,
    SNAPSHOT_COLUMN_NAMES,
    SNAPSHOT_COLUMNS,
    empty_snapshots,
)
from crypto_assets.market.synthetic import synthetic_window
from crypto_assets.market.universe import default_universe
from crypto_assets.resources import CsvMarketConfig, MarketSource

SHARED_MARKET_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "market"

HEADER = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount"
OLD_HEADER = "Unix Timestamp,Date,Symbol,Open,High,Low,Close,Volume"
T0 = datetime(2021, 6, 9, 20)  # naive UTC


def unix_ms(hour: datetime) -> str:
    return str(int(utc(hour).timestamp() * 1000))


def utc(hour: datetime) -> datetime:
    return hour.replace(tzinfo=UTC)


def unix_s(hour: datetime) -> str:
    return f"{utc(hour).timestamp():.1f}"


def candle(
    hour: datetime,
    close: float = 100.5,
    *,
    open_: float = 100.0,
    high: float | None = None,
    low: float | None = None,
    volume_quote: float = 1000.0,
    symbol: str = "BTC/USDT",
    tradecount: str = "42",
    unix: str | None = None,
    date: str | None = None,
) -> str:
    """A new-style line (ms timestamp, ISO date); keyword overrides make the quirky ones."""
    high = max(open_, close) + 1 if high is None else high
    low = min(open_, close) - 1 if low is None else low
    fields = [
        unix if unix is not None else unix_ms(hour),
        date if date is not None else f"{hour:%Y-%m-%d %H:%M:%S}",
        symbol,
        *(f"{v:.8f}" for v in (open_, high, low, close)),
        f"{volume_quote / close if close else 0:.8f}",
        f"{volume_quote:.8f}",
        tradecount,
    ]
    return ",".join(fields)


def old_candle(hour: datetime, close: float = 100.5, volume_quote: float = 1000.0) -> str:
    """An old-style line: float seconds, 12-hour date, 2-decimal values, NULL trade count."""
    return (
        f"{unix_s(hour)},{hour:%Y-%m-%d %I-%p},BTC/USDT,100,{close + 1:.2f},99,{close:.2f},"
        f"{volume_quote / close:.2f},{volume_quote:.2f},NULL"
    )


def write(tmp_path: Path, lines: list[str], name: str = "Binance_BTCUSDT_1h.csv", header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def load(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, FileReport]:
    snapshots, quarantine, reports = load_market_files([str(path)])
    assert len(reports) == 1
    return snapshots, quarantine, reports[0]


def hours(n: int, start: datetime = T0) -> list[datetime]:
    return [start + timedelta(hours=i) for i in range(n)]


def only_reason(quarantine: pd.DataFrame) -> str:
    assert len(quarantine) == 1, quarantine
    return quarantine["reason"].iloc[0]


def assert_accounted(report: FileReport) -> None:
    assert report.rows_read == report.rows_kept + report.duplicates_removed + report.quarantined


# --------------------------------------------------------------------------- CryptoDataDownload format


def test_new_style_file_maps_to_the_unified_schema(tmp_path: Path) -> None:
    lines = [candle(h, close=100 + i, volume_quote=1000 + i) for i, h in enumerate(hours(3))][::-1]  # newest first
    snapshots, quarantine, report = load(write(tmp_path, lines))

    assert list(snapshots.columns) == SNAPSHOT_COLUMN_NAMES
    assert list(quarantine.columns) == QUARANTINE_COLUMN_NAMES
    assert quarantine.empty
    assert snapshots["partition_hour"].tolist() == hours(3)  # sorted oldest first
    first = snapshots.iloc[0]
    assert (first["coin_id"], first["symbol"], first["source"]) == ("bitcoin", "BTC", "csv")
    assert first["observed_at"] == first["partition_hour"] == T0
    assert (first["open"], first["high"], first["low"], first["price"]) == (100.0, 101.0, 99.0, 100.0)
    assert first["volume_quote"] == 1000.0
    assert pd.isna(first["market_cap"])
    assert report == FileReport(
        path=str((tmp_path / "Binance_BTCUSDT_1h.csv").resolve()),
        rows_read=3,
        rows_kept=3,
        duplicates_removed=0,
        quarantined_by_reason={},
        first_hour=T0,
        last_hour=T0 + timedelta(hours=2),
        gaps=0,
    )


@pytest.mark.parametrize(
    "preamble",
    ["https://www.CryptoDataDownload.com", "Created on 2021-06-10 10:00:01,https://www.CryptoDataDownload.com"],
)
def test_extra_first_line_before_the_header_is_skipped(tmp_path: Path, preamble: str) -> None:
    path = tmp_path / "Binance_BTCUSDT_1h.csv"
    path.write_text("\n".join([preamble, HEADER, candle(T0)]) + "\n")
    snapshots, quarantine, report = load(path)
    assert len(snapshots) == 1 and quarantine.empty
    assert report.rows_read == 1  # neither the preamble nor the header is a record


def test_other_header_style_with_a_single_volume_column_in_base_units(tmp_path: Path) -> None:
    lines = [f"{unix_s(T0)},{T0:%Y-%m-%d %I-%p},ETH/USD,2000,2010,1990,2005,3.5"]
    snapshots, quarantine, _ = load(write(tmp_path, lines, "Gemini_ETHUSD_1h.csv", header=OLD_HEADER))
    assert quarantine.empty
    row = snapshots.iloc[0]
    assert (row["coin_id"], row["symbol"], row["price"]) == ("ethereum", "ETH", 2005.0)
    assert row["volume_quote"] == pytest.approx(3.5 * 2005)  # base volume * close


def test_ms_and_float_second_timestamps_read_the_same(tmp_path: Path) -> None:
    old, new = hours(2)
    snapshots, quarantine, _ = load(write(tmp_path, [candle(old, unix=unix_s(old)), candle(new)]))
    assert quarantine.empty
    assert snapshots["observed_at"].tolist() == [old, new]


def test_microsecond_timestamps_are_read_too(tmp_path: Path) -> None:
    snapshots, _, _ = load(write(tmp_path, [candle(T0, unix=unix_ms(T0) + "000")]))
    assert snapshots["observed_at"].tolist() == [T0]


@pytest.mark.parametrize("hour", [0, 6, 12, 23])
def test_twelve_hour_dates(tmp_path: Path, hour: int) -> None:
    ts = datetime(2017, 8, 17, hour)
    snapshots, quarantine, _ = load(write(tmp_path, [old_candle(ts)]))
    assert quarantine.empty
    assert snapshots["partition_hour"].tolist() == [ts]


def test_null_trade_count_is_accepted(tmp_path: Path) -> None:
    lines = [candle(T0, tradecount="NULL"), candle(T0 + timedelta(hours=1), tradecount="")]
    snapshots, quarantine, _ = load(write(tmp_path, lines))
    assert len(snapshots) == 2 and quarantine.empty


# --------------------------------------------------------------------------- duplicates and gaps


def test_duplicate_hours_keep_the_same_row_in_any_order(tmp_path: Path) -> None:
    full = candle(T0, close=100.5, volume_quote=5000.004)
    forming = candle(T0, close=99.0, volume_quote=4000.0, tradecount="NULL")  # exported mid-candle
    rounded_copy = old_candle(T0, close=100.5, volume_quote=5000.0)  # within a cent of the full row
    neighbour = candle(T0 + timedelta(hours=1))
    winners = set()
    rng = random.Random(7)
    for n in range(8):
        order = rng.sample([full, forming, rounded_copy, neighbour], k=4)
        snapshots, quarantine, report = load(write(tmp_path, order, name=f"order{n}.csv"))
        winners.add(tuple(snapshots.iloc[0][["price", "volume_quote"]]))
        assert report.duplicates_removed == 2 and report.rows_kept == 2
        assert set(quarantine["reason"]) == {"duplicate_hour"}
        kept_line = order.index(full) + 2
        assert quarantine["detail"].str.contains(f"was kept: order{n}.csv:{kept_line} ").all()
        assert_accounted(report)
    assert winners == {(100.5, 5000.004)}


def test_larger_volume_beats_the_trade_count(tmp_path: Path) -> None:
    # The real BTC 2020-10-27 06:00 pair: the rounded row has 0.9% more volume, so it wins.
    lines = [candle(T0, volume_quote=20352011.10380545), old_candle(T0, volume_quote=20541476.48)]
    snapshots, _, _ = load(write(tmp_path, lines))
    assert snapshots["volume_quote"].tolist() == [20541476.48]


def test_exact_duplicates_are_recorded(tmp_path: Path) -> None:
    line = candle(T0)
    snapshots, quarantine, report = load(write(tmp_path, [line, line, candle(T0 + timedelta(hours=1))]))
    assert len(snapshots) == 2
    assert only_reason(quarantine) == "exact_duplicate"
    assert quarantine["source_ref"].iloc[0] == "Binance_BTCUSDT_1h.csv:3"
    assert report.duplicates_removed == 1 and report.quarantined_by_reason == {}


def test_duplicates_across_files_are_removed_once(tmp_path: Path) -> None:
    a = write(tmp_path, [candle(T0, volume_quote=10.0)], name="a.csv")
    b = write(tmp_path, [candle(T0, volume_quote=20.0)], name="b.csv")
    snapshots, quarantine, reports = load_market_files([str(a), str(b)])
    assert snapshots["volume_quote"].tolist() == [20.0]
    assert quarantine["source_ref"].tolist() == ["a.csv:2"]
    assert [r.rows_kept for r in reports] == [0, 1]


def test_gaps_are_counted_per_coin(tmp_path: Path) -> None:
    btc = [candle(h) for h in hours(10) if h.hour not in (22, 23, 0)]  # one 3-hour gap
    eth = [candle(h, symbol="ETH/USDT") for h in hours(10) if h.hour != 21]  # one 1-hour gap
    _, _, report = load(write(tmp_path, btc + eth))
    assert report.gaps == 4


# --------------------------------------------------------------------------- rejected records


@pytest.mark.parametrize(
    "open_, high, low, close",
    [
        (16199.91, 16199.91, 4261.32, 4308.83),  # oldest BTC row: open 3.8x the close
        (652.74, 652.74, 298.0, 300.79),  # oldest ETH row: 2.2x
        (100.0, 99.0, 98.0, 100.5),  # high below the close
        (100.0, 102.0, 100.2, 101.0),  # low above the open
        (100.0, 450.0, 99.0, 100.5),  # high 4.5x the low
    ],
)
def test_bad_ticks_are_quarantined(tmp_path: Path, open_: float, high: float, low: float, close: float) -> None:
    bad = candle(T0, open_=open_, high=high, low=low, close=close)
    snapshots, quarantine, _ = load(write(tmp_path, [bad, candle(T0 + timedelta(hours=1))]))
    assert only_reason(quarantine) == "bad_tick"
    assert quarantine["partition_hour"].tolist() == [T0]
    assert quarantine["raw_record"].tolist() == [bad]
    assert len(snapshots) == 1


def test_a_deep_wick_is_kept_for_the_anomaly_detectors(tmp_path: Path) -> None:
    # ETH 2017-08-22 04:00: open 280, low 144.21, close 287 (range 2.14x) is a real thin-book print.
    snapshots, quarantine, _ = load(write(tmp_path, [candle(T0, open_=280, high=309.03, low=144.21, close=287)]))
    assert quarantine.empty and len(snapshots) == 1


@pytest.mark.parametrize("field", ["open", "close"])
def test_zero_price_is_quarantined(tmp_path: Path, field: str) -> None:
    bad = candle(T0, **{"open_" if field == "open" else "close": 0.0}, low=0.0)
    _, quarantine, _ = load(write(tmp_path, [bad, candle(T0 + timedelta(hours=1))]))
    assert only_reason(quarantine) == "non_positive_price"
    assert field in quarantine["detail"].iloc[0]


@pytest.mark.parametrize("symbol", ["ETC/BTC", "ETCBTC", "BTC/EUR"])
def test_non_usd_quote_is_quarantined(tmp_path: Path, symbol: str) -> None:
    _, quarantine, _ = load(write(tmp_path, [candle(T0, symbol=symbol), candle(T0 + timedelta(hours=1))]))
    assert only_reason(quarantine) == "non_usd_quote"
    assert symbol in quarantine["detail"].iloc[0]


@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC-USD", "BTCUSDT", "btc/busd"])
def test_usd_pairs_in_any_spelling_are_accepted(tmp_path: Path, symbol: str) -> None:
    snapshots, quarantine, _ = load(write(tmp_path, [candle(T0, symbol=symbol)]))
    assert quarantine.empty
    assert snapshots[["coin_id", "symbol"]].values.tolist() == [["bitcoin", "BTC"]]


@pytest.mark.parametrize(
    "unix, date, readable",
    [("abc", None, True), (None, "yesterday", True), ("", "2021-13-45 25:00:00", False)],
)
def test_unparseable_timestamp_is_quarantined(
    tmp_path: Path, unix: str | None, date: str | None, readable: bool
) -> None:
    bad = candle(T0, unix=unix, date=date)
    _, quarantine, _ = load(write(tmp_path, [bad, candle(T0 + timedelta(hours=1))]))
    assert only_reason(quarantine) == "unparseable_timestamp"
    # The quarantine row keeps whichever time did read; NULL when none did.
    assert quarantine["partition_hour"].isna().tolist() == [not readable]


def test_a_date_off_unix_by_a_time_zone_is_kept_on_unix(tmp_path: Path) -> None:
    # As in the real BTC/ETH files of 2017-09-22..26, where the date is 4 hours behind unix (US Eastern).
    off = candle(T0, date=f"{T0 - timedelta(hours=4):%Y-%m-%d %I-%p}")
    path = write(tmp_path, [off, candle(T0 + timedelta(hours=1))])
    snapshots, quarantine, report = load(path)
    assert quarantine.empty
    assert snapshots["partition_hour"].tolist() == [T0, T0 + timedelta(hours=1)]  # unix wins
    assert report.date_disagrees_with_unix == 1
    batch = csv_window([str(path)], utc(T0), utc(T0) + timedelta(hours=2))
    assert batch.stats["date_disagrees_with_unix"] == 1
    assert any("time-zone offset" in w for w in batch.warnings), batch.warnings


@pytest.mark.parametrize("offset", [timedelta(days=3), timedelta(hours=-15), timedelta(hours=4, minutes=7)])
def test_unix_and_date_disagreeing_beyond_a_time_zone_is_quarantined(tmp_path: Path, offset: timedelta) -> None:
    bad = candle(T0, date=f"{T0 + offset:%Y-%m-%d %H:%M:%S}")
    _, quarantine, report = load(write(tmp_path, [bad, candle(T0 + timedelta(hours=1))]))
    assert only_reason(quarantine) == "timestamp_mismatch"
    assert f"{T0 + offset:%Y-%m-%d %H:%M}" in quarantine["detail"].iloc[0]
    assert report.date_disagrees_with_unix == 0


@pytest.mark.parametrize(
    "replace, reason",
    [
        (("100.50000000", "abc"), "non_numeric"),
        (("100.50000000", "NULL"), "missing_price"),
        (("100.50000000", ""), "missing_price"),
        (("99.00000000", "nan"), "missing_price"),
        (("1000.00000000", "1,2"), "extra_column"),
        (("1000.00000000,42", "1000"), "missing_column"),
        (("1000.00000000", "x1000"), "non_numeric"),
        (("1000.00000000", "-5"), "negative_volume"),
    ],
)
def test_bad_fields_are_quarantined(tmp_path: Path, replace: tuple[str, str], reason: str) -> None:
    line = candle(T0)  # close 100.5, low 99, volume_quote 1000, tradecount 42
    bad = line[::-1].replace(replace[0][::-1], replace[1][::-1], 1)[::-1]  # the last occurrence
    snapshots, quarantine, report = load(write(tmp_path, [bad, candle(T0 + timedelta(hours=1))]))
    assert only_reason(quarantine) == reason
    assert quarantine["source_ref"].tolist() == ["Binance_BTCUSDT_1h.csv:2"]
    assert quarantine["raw_record"].tolist() == [bad]
    assert len(snapshots) == 1
    assert_accounted(report)


def test_missing_volume_keeps_the_row_with_null_volume(tmp_path: Path) -> None:
    # The real ETH file has one row (2019-11-07 03:00) whose Volume USDT is 'nan'.
    line = candle(T0).replace("1000.00000000", "nan")
    snapshots, quarantine, report = load(write(tmp_path, [line]))
    assert quarantine.empty
    assert snapshots["volume_quote"].isna().tolist() == [True]
    assert report.rows_without_volume == 1


def test_zero_volume_is_kept_as_zero(tmp_path: Path) -> None:
    # Thin markets have hours that traded nothing: a fact, not a missing value.
    line = candle(T0).replace("1000.00000000", "0")
    snapshots, quarantine, report = load(write(tmp_path, [line]))
    assert quarantine.empty
    assert snapshots["volume_quote"].tolist() == [0.0]
    assert report.rows_without_volume == 0


def test_a_volume_column_in_another_currency_is_reported_not_guessed(tmp_path: Path) -> None:
    header = "unix,date,symbol,open,high,low,close,Volume XYZ,Extra Notes"
    lines = [f"{unix_ms(h)},{h:%Y-%m-%d %H:%M:%S},BTC/USD,100,101,99,100.5,7,x" for h in hours(3)]
    path = write(tmp_path, lines, name="Bitstamp_BTCUSD_1h.csv", header=header)
    snapshots, _, report = load(path)
    assert snapshots["volume_quote"].isna().all() and len(snapshots) == 3
    assert set(report.unused_columns) == {"volume XYZ", "extra_notes"}
    assert "neither base nor quote of BTC/USD" in report.unused_columns["volume XYZ"]
    assert report.rows_without_volume == 3
    batch = csv_window([str(path)], utc(T0), utc(T0) + timedelta(hours=3))
    assert batch.stats["rows_without_usable_volume"] == 3
    assert any("'volume XYZ' not used" in w for w in batch.warnings), batch.warnings
    assert any("3 kept rows have no usable volume" in w for w in batch.warnings), batch.warnings


CDD_NO_SYMBOL = "Date,Open,High,Low,Close"  # an older CryptoDataDownload export: 12-hour dates, no symbol


def test_pair_comes_from_the_file_name_when_there_is_no_symbol_column(tmp_path: Path) -> None:
    lines = [f"{h:%Y-%m-%d %I-%p},100,101,99,100.5" for h in hours(3)]
    snapshots, quarantine, report = load(write(tmp_path, lines, name="Bitstamp_BTCUSD_1h.csv", header=CDD_NO_SYMBOL))
    assert quarantine.empty and report.unreadable is None
    assert snapshots["coin_id"].unique().tolist() == ["bitcoin"]
    assert snapshots["partition_hour"].tolist() == hours(3)


def test_an_unreadable_file_is_reported_and_the_others_imported(tmp_path: Path) -> None:
    good = write(tmp_path, [candle(h) for h in hours(2)])
    nameless = write(tmp_path, [f"{T0:%Y-%m-%d %I-%p},100,101,99,100.5"], name="export.csv", header=CDD_NO_SYMBOL)
    no_close = write(
        tmp_path,
        ["1623283200000,2021-06-10 00:00:00,ETH/USDT,1,2,0.5,3"],
        name="Binance_ETHUSDT_1h.csv",
        header="unix,date,symbol,open,high,low,Volume ETH",
    )
    snapshots, _, reports = load_market_files([str(tmp_path)])
    by_name = {Path(r.path).name: r for r in reports}
    assert set(by_name) == {good.name, nameless.name, no_close.name}  # the report lists every file
    assert len(snapshots) == 2 and by_name[good.name].unreadable is None
    assert "does not name the pair" in by_name[nameless.name].unreadable
    assert "missing required column(s): close" in by_name[no_close.name].unreadable
    batch = csv_window([str(tmp_path)], utc(T0), utc(T0) + timedelta(hours=2))
    assert batch.stats["files_unreadable"] == 2 and len(batch.snapshots) == 2
    assert sum("unreadable, not imported" in w for w in batch.warnings) == 2, batch.warnings
    assert "unreadable" in csv_replay.format_reports(reports)


def test_blank_lines_are_not_records(tmp_path: Path) -> None:
    _, _, report = load(write(tmp_path, [candle(T0), "", "   ", candle(T0 + timedelta(hours=1))]))
    assert report.rows_read == 2 and report.rows_kept == 2


# --------------------------------------------------------------------------- broken input


def test_missing_required_column_alone_raises_naming_it(tmp_path: Path) -> None:
    header = "unix,date,symbol,open,high,low,Volume BTC"  # no close
    path = write(tmp_path, ["1623283200000,2021-06-10 00:00:00,BTC/USDT,1,2,0.5,3"], header=header)
    with pytest.raises(
        ValueError, match=r"no readable market file: Binance_BTCUSDT_1h\.csv.*missing required column\(s\): close"
    ):
        load_market_files([str(path)])


def test_file_without_a_recognisable_header_raises(tmp_path: Path) -> None:
    path = tmp_path / "headerless.csv"
    path.write_text(candle(T0) + "\n" + candle(T0 + timedelta(hours=1)) + "\n")
    with pytest.raises(ValueError, match=r"headerless\.csv: no recognisable header"):
        load_market_files([str(path)])


def test_file_with_no_readable_time_at_all_raises(tmp_path: Path) -> None:
    path = write(tmp_path, [candle(T0, unix="soon", date="later")])
    with pytest.raises(ValueError, match="no record has a readable timestamp"):
        load_market_files([str(path)])


def test_nonexistent_path_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nope.csv: no such file or directory"):
        load_market_files([str(tmp_path / "nope.csv")])


def test_directory_without_market_files_raises(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(ValueError, match="holds no .csv or .parquet files"):
        load_market_files([str(tmp_path)])


def test_header_only_file_gives_an_empty_result(tmp_path: Path) -> None:
    snapshots, quarantine, report = load(write(tmp_path, []))
    assert snapshots.empty and quarantine.empty
    assert (report.rows_read, report.first_hour, report.gaps) == (0, None, 0)


def test_directory_reads_every_market_file_sorted(tmp_path: Path) -> None:
    write(tmp_path, [candle(T0, symbol="ETH/USDT")], name="b.csv")
    write(tmp_path, [candle(T0)], name="a.csv")
    (tmp_path / "README.md").write_text("not data")
    snapshots, _, reports = load_market_files([str(tmp_path)])
    assert [Path(r.path).name for r in reports] == ["a.csv", "b.csv"]
    assert sorted(snapshots["coin_id"]) == ["bitcoin", "ethereum"]


# --------------------------------------------------------------------------- plain CSV / Parquet


PLAIN = pd.DataFrame(
    {
        "coin_id": ["bitcoin", "ethereum", "bitcoin", "bitcoin"],
        "symbol": ["btc", "ETH", "BTC", "BTC"],
        "observed_at": ["2021-06-09T20:15:00Z", "1623269700", "2021-06-09 23:30:00+02:00", "not a time"],
        "price": [36000.0, 2500.0, 36100.0, 36200.0],
        "volume_quote": [1e6, 5e5, None, 1e6],
        "market_cap": [6.7e11, None, 6.7e11, 6.7e11],
    }
)


def check_plain(snapshots: pd.DataFrame, quarantine: pd.DataFrame) -> None:
    assert snapshots[["coin_id", "symbol", "price"]].values.tolist() == [
        ["bitcoin", "BTC", 36000.0],
        ["ethereum", "ETH", 2500.0],
        ["bitcoin", "BTC", 36100.0],
    ]
    assert snapshots["observed_at"].tolist() == [
        datetime(2021, 6, 9, 20, 15),
        datetime(2021, 6, 9, 20, 15),
        datetime(2021, 6, 9, 21, 30),
    ]
    assert snapshots["partition_hour"].tolist() == [datetime(2021, 6, 9, 20)] * 2 + [datetime(2021, 6, 9, 21)]
    assert snapshots["open"].isna().all()
    assert snapshots["market_cap"].tolist()[0] == 6.7e11
    assert only_reason(quarantine) == "unparseable_timestamp"


def test_plain_csv(tmp_path: Path) -> None:
    path = tmp_path / "snapshots.csv"
    PLAIN.to_csv(path, index=False)
    snapshots, quarantine, _ = load(path)
    check_plain(snapshots, quarantine)
    assert quarantine["source_ref"].tolist() == ["snapshots.csv:5"]


def test_plain_parquet(tmp_path: Path) -> None:
    path = tmp_path / "snapshots.parquet"
    PLAIN.to_parquet(path, index=False)
    snapshots, quarantine, _ = load(path)
    check_plain(snapshots, quarantine)
    assert quarantine["source_ref"].tolist() == ["snapshots.parquet:4"]  # row number
    assert quarantine["raw_record"].iloc[0].startswith("bitcoin,BTC,not a time,36200.0")


def test_plain_parquet_with_real_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "typed.parquet"
    frame = PLAIN.iloc[:1].assign(observed_at=pd.Timestamp("2021-06-09 20:15", tz="UTC"))
    frame.to_parquet(path, index=False)
    snapshots, _, _ = load(path)
    assert snapshots["observed_at"].tolist() == [datetime(2021, 6, 9, 20, 15)]


def test_plain_hour_keeps_its_latest_observation(tmp_path: Path) -> None:
    path = tmp_path / "snapshots.csv"
    PLAIN.iloc[[0, 0]].assign(observed_at=["2021-06-09T20:50:00", "2021-06-09T20:10:00"], price=[2.0, 1.0]).to_csv(
        path, index=False
    )
    snapshots, quarantine, _ = load(path)
    assert snapshots["price"].tolist() == [2.0]
    assert only_reason(quarantine) == "duplicate_hour"


def test_plain_file_missing_a_required_column_raises(tmp_path: Path) -> None:
    path = tmp_path / "snapshots.parquet"
    PLAIN.drop(columns="coin_id").to_parquet(path, index=False)
    with pytest.raises(ValueError, match=r"snapshots\.parquet.*missing required column\(s\): coin_id"):
        load_market_files([str(path)])


# --------------------------------------------------------------------------- windows, accounting, caching


def messy_file(tmp_path: Path) -> Path:
    """Eight hours with one of each kind of trouble, and two records with no readable time."""
    h = hours(8)
    return write(
        tmp_path,
        [
            candle(h[7]),
            candle(h[6], close=0.0, low=0.0),
            candle(h[5], volume_quote=2000.0),
            old_candle(h[5]),
            candle(h[5]),
            candle(h[4], symbol="ETC/BTC"),
            candle(h[3], unix="garbled", date="garbled"),
            candle(h[2], date=f"{h[2] - timedelta(days=3):%Y-%m-%d %H:%M:%S}"),
            "1,2,3",
            candle(h[1], open_=16199.91, high=16199.91, low=4261.32, close=4308.83),
            candle(h[0]),
        ],
    )


def test_accounting_identity(tmp_path: Path) -> None:
    snapshots, quarantine, report = load(messy_file(tmp_path))
    assert report.rows_read == 11
    assert report.rows_kept == len(snapshots) == 3
    assert report.duplicates_removed == 2
    assert report.quarantined_by_reason == {
        "non_positive_price": 1,
        "non_usd_quote": 1,
        "unparseable_timestamp": 1,
        "timestamp_mismatch": 1,
        "missing_column": 1,
        "bad_tick": 1,
    }
    assert len(quarantine) == report.duplicates_removed + report.quarantined
    assert_accounted(report)
    assert report.gaps == 5  # hours 1-4 and 6 are missing between the kept hours 0, 5 and 7


def test_windows_split_rows_and_quarantine_exactly_once(tmp_path: Path) -> None:
    path = str(messy_file(tmp_path))
    _, quarantine, report = load(Path(path))
    starts = [utc(h) for h in hours(12, start=T0 - timedelta(hours=2))[::2]]
    batches = [csv_window([path], start, start + timedelta(hours=2)) for start in starts]
    assert sum(len(b.snapshots) for b in batches) == report.rows_kept
    assert sum(len(b.quarantine) for b in batches) == len(quarantine)
    for key in ("rows_read", "rows_kept", "duplicates_removed", "quarantined"):
        assert sum(b.stats[key] for b in batches) == getattr(report, key)
    for batch in batches:
        s = batch.stats
        assert s["rows_read"] == s["rows_kept"] + s["duplicates_removed"] + s["quarantined"]
        assert set(s) == {
            "rows_read",
            "rows_kept",
            "duplicates_removed",
            "quarantined",
            "files",
            "files_unreadable",
            "rows_without_usable_volume",
            "date_disagrees_with_unix",
        }
    # The timeless records (the short line and the garbled times) belong to the file's first hour.
    first = batches[1]
    assert first.quarantine["partition_hour"].isna().sum() == 2
    assert first.stats["files"] == 1 and batches[0].stats["files"] == 0


def test_window_filters_on_partition_hour(tmp_path: Path) -> None:
    path = str(write(tmp_path, [candle(h) for h in hours(5)]))
    start = utc(T0 + timedelta(hours=1))
    batch = csv_window([path], start, start + timedelta(hours=2))
    assert batch.snapshots["partition_hour"].tolist() == hours(2, start=T0 + timedelta(hours=1))
    assert batch.stats["rows_read"] == 2
    # Other time zones are converted to UTC.
    east = timezone(timedelta(hours=2))
    batch = csv_window([path], start.astimezone(east), (start + timedelta(hours=1)).astimezone(east))
    assert batch.snapshots["partition_hour"].tolist() == [T0 + timedelta(hours=1)]
    with pytest.raises(ValueError, match="end must be after start"):
        csv_window([path], start, start)


def test_each_file_is_parsed_once_until_it_changes(tmp_path: Path) -> None:
    path = write(tmp_path, [candle(h) for h in hours(3)])
    csv_replay._parse_file.cache_clear()
    for start in hours(3):
        csv_window([str(path)], utc(start), utc(start) + timedelta(hours=1))
    assert csv_replay._parse_file.cache_info().misses == 1
    path.write_text(path.read_text() + candle(T0 + timedelta(hours=3)) + "\n")
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1_000_000))
    _, _, (report,) = load_market_files([str(path)])
    assert report.rows_read == 4
    assert csv_replay._parse_file.cache_info().misses == 2


def test_command_line_prints_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_replay.main([str(messy_file(tmp_path))])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["file", "read", "kept", "dedup", "quar."]
    assert out[2].split()[:5] == ["Binance_BTCUSDT_1h.csv", "11", "3", "2", "6"]
    assert "bad_tick=1" in out[2]


# --------------------------------------------------------------------------- every window, typed frames


def assert_typed(frame: pd.DataFrame, columns: list[tuple[str, str, str]]) -> None:
    """The schema's columns, in order, with its dtypes: datetime columns are datetimes even when empty."""
    dtypes = {"VARCHAR": "object", "DOUBLE": "float64", "TIMESTAMP": "datetime64[us]"}
    assert [(c, str(t)) for c, t in frame.dtypes.items()] == [(c, dtypes[t]) for c, t, _ in columns]


def test_every_csv_window_gives_typed_frames_with_anomalies_injected(tmp_path: Path) -> None:
    # Three hours, a day's gap, three hours: rows without an event drawn, one hour, a gap, after the end.
    path = write(tmp_path, [candle(h) for h in hours(3) + hours(3, start=T0 + timedelta(days=1))])
    source = MarketSource(kind="csv", csv=CsvMarketConfig(paths=[str(path)], anomaly_rate=0.02, seed=7))
    windows = {  # name: (start, hours, rows in it)
        "no event drawn": (T0, 3, 3),
        "one hour": (T0 + timedelta(hours=1), 1, 1),
        "a gap in the files": (T0 + timedelta(hours=4), 12, 0),
        "after the end": (T0 + timedelta(days=9), 24, 0),
    }
    for name, (start, n_hours, n_rows) in windows.items():
        batch = source.fetch(utc(start), utc(start) + timedelta(hours=n_hours))
        assert len(batch.snapshots) == n_rows, name
        assert batch.ground_truth.empty and batch.stats["anomalous_rows"] == 0, name
        assert_typed(batch.snapshots, SNAPSHOT_COLUMNS)
        assert_typed(batch.quarantine, QUARANTINE_COLUMNS)
        assert_typed(batch.ground_truth, GROUND_TRUTH_COLUMNS)
    # With events drawn, the labels carry their hour.
    path = write(tmp_path, [candle(h, symbol="ETH/USDT") for h in hours(48)], name="Binance_ETHUSDT_1h.csv")
    busy = MarketSource(kind="csv", csv=CsvMarketConfig(paths=[str(path)], anomaly_rate=0.45, seed=7))
    batch = busy.fetch(utc(T0), utc(T0) + timedelta(days=2))
    assert len(batch.ground_truth) > 0
    assert_typed(batch.ground_truth, GROUND_TRUTH_COLUMNS)
    assert (batch.ground_truth["partition_hour"] == batch.ground_truth["observed_at"].dt.floor("h")).all()


def test_injection_gives_typed_ground_truth_when_nothing_is_drawn() -> None:
    empty = empty_snapshots()
    one_hour = empty.reindex([0]).assign(coin_id="bitcoin", observed_at=T0, price=1.0, open=1.0, high=1.0, low=1.0)
    for frame, rate in [(empty, 0.02), (empty, 0.0), (one_hour, 0.0), (one_hour, 1e-9)]:
        _, truth = inject_anomalies(frame, seed=7, rate=rate, source="csv")
        assert truth.empty
        assert_typed(truth, GROUND_TRUTH_COLUMNS)


def test_synthetic_windows_give_typed_frames_too() -> None:
    for rate in (0.0, 0.02):
        batch = synthetic_window(default_universe(2), 7, utc(T0), utc(T0) + timedelta(hours=1), rate)
        assert len(batch.snapshots) == 2
        assert_typed(batch.snapshots, SNAPSHOT_COLUMNS)
        assert_typed(batch.quarantine, QUARANTINE_COLUMNS)
        assert_typed(batch.ground_truth, GROUND_TRUTH_COLUMNS)


def test_ingesting_a_csv_day_after_the_files_end_succeeds(warehouse, instance, tmp_path: Path) -> None:
    path = write(tmp_path, [candle(h) for h in hours(3)])  # 2021; the day ingested is in 2026
    source = MarketSource(kind="csv", csv=CsvMarketConfig(paths=[str(path)]))  # anomalies injected (the default)
    result = dg.materialize(
        [ingestion.market_snapshots],
        instance=instance,
        partition_key="2026-03-01",
        resources={"warehouse": warehouse, "market_source": source},
        raise_on_error=False,
    )
    assert result.success
    assert warehouse.query("SELECT count(*) AS n FROM raw.anomaly_ground_truth")["n"].iloc[0] == 0


# --------------------------------------------------------------------------- the real shared files


def test_real_shared_data_matches_the_readme() -> None:
    if not SHARED_MARKET_DATA.is_dir():
        pytest.skip(f"real market data folder {SHARED_MARKET_DATA} is absent (it is not part of the project clone)")
    snapshots, quarantine, reports = load_market_files([str(SHARED_MARKET_DATA)])
    by_file = {Path(r.path).name: r for r in reports}
    for name in ("Binance_BTCUSDT_1h.csv", "Binance_ETHUSDT_1h.csv"):
        r = by_file[name]
        assert r.rows_read == 36_062
        assert r.duplicates_removed == 2_649  # the 2020 overlap
        assert r.rows_kept + r.quarantined == 33_413  # distinct hours: kept or quarantined
        assert r.quarantined_by_reason == {"bad_tick": 1}
        # 2017-09-22 19:00..09-26 18:00: the date is 4 hours behind unix; unix wins, the rows are kept.
        assert r.date_disagrees_with_unix == 91
        assert r.unreadable is None and r.unused_columns == {}
        assert r.first_hour == datetime(2017, 8, 17, 5)  # 04:00 is the bad tick
        assert r.last_hour == datetime(2021, 6, 10)
        assert_accounted(r)
    for name in ("Binance_ADAUSDT_1h.csv", "Binance_BNBUSDT_1h.csv"):
        r = by_file[name]
        assert (r.rows_read, r.rows_kept, r.duplicates_removed, r.quarantined) == (7_478, 7_478, 0, 0)
        assert r.first_hour == datetime(2020, 8, 1, 23)

    bad_ticks = quarantine[quarantine["reason"] == "bad_tick"]
    assert bad_ticks["source_ref"].tolist() == ["Binance_BTCUSDT_1h.csv:36063", "Binance_ETHUSDT_1h.csv:36063"]
    assert bad_ticks["raw_record"].iloc[0].startswith("1502942400.0,2017-08-17 04-AM,BTC/USDT,16199.91")
    assert not snapshots.duplicated(["coin_id", "partition_hour"]).any()
    btc = snapshots[snapshots["coin_id"] == "bitcoin"].set_index("partition_hour")
    # The older export caught 2020-11-20 07:00 while it was still forming; the full candle is kept.
    assert btc.at[pd.Timestamp("2020-11-20 07:00"), "price"] == 18212.0
