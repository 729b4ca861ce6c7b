"""The csv replay source: every quirk of CryptoDataDownload exports, the plain format, windows, intervals,
archives, quotes in another coin and one venue per coin."""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys
import zipfile
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
from crypto_assets.market.sources import CsvReplayMarket
from crypto_assets.market.synthetic import synthetic_window
from crypto_assets.market.universe import default_universe

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
    ended = report.rows_kept + report.rows_merged + report.duplicates_removed + report.quarantined
    assert report.rows_read == ended + report.rows_not_used


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
        interval="1h",
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


def test_the_same_coin_in_two_unrelated_files_comes_from_one_of_them(tmp_path: Path) -> None:
    # Two files whose names do not make them one series are two venues: one is used whole, not spliced.
    a = write(tmp_path, [candle(T0, volume_quote=10.0)], name="a.csv")
    b = write(tmp_path, [candle(h, volume_quote=20.0) for h in hours(2)], name="b.csv")
    snapshots, quarantine, reports = load_market_files([str(a), str(b)])
    assert snapshots["volume_quote"].tolist() == [20.0, 20.0]
    assert quarantine.empty
    assert [(r.rows_kept, r.rows_not_used) for r in reports] == [(0, 1), (2, 0)]
    assert "taken from b.csv (more readable hours: 2 against 1)" in reports[0].venue_choice["bitcoin"]


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


@pytest.mark.parametrize(
    "symbol, reason",
    [
        ("ETC/BTC", "no_quote_usd_rate"),  # the file's BTC/USDT series lacks that hour
        ("ETCBTC", "no_quote_usd_rate"),
        ("BTC/EUR", "non_usd_quote"),  # no EUR priced in USD anywhere
    ],
)
def test_a_pair_that_cannot_be_converted_to_usd_is_quarantined(tmp_path: Path, symbol: str, reason: str) -> None:
    other = candle(T0 + timedelta(hours=1), symbol="ETH/USDT" if reason == "non_usd_quote" else "BTC/USDT")
    _, quarantine, report = load(write(tmp_path, [candle(T0, symbol=symbol), other]))
    assert only_reason(quarantine) == reason
    base, quote = ("BTC", "EUR") if symbol == "BTC/EUR" else ("ETC", "BTC")
    assert f"{base}/{quote}" in quarantine["detail"].iloc[0]
    assert report.quarantined_by_reason == {reason: 1}


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
    with pytest.raises(ValueError, match=r"folder holds no market files \(\.csv, \.csv\.gz.*\); it holds notes\.txt"):
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
    assert [Path(r.path).name for r in reports] == ["README.md", "a.csv", "b.csv"]
    assert reports[0].skipped.startswith("not a market file: .md")
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
        "no_quote_usd_rate": 1,  # ETC/BTC at an hour the file's BTC series lacks
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
            "rows_merged",
            "rows_not_used",
            "files_skipped",
            "incomplete_hours",
            "rows_converted_to_usd",
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
    source = CsvReplayMarket(paths=[str(path)], anomaly_rate=0.02, seed=7)
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
    busy = CsvReplayMarket(paths=[str(path)], anomaly_rate=0.45, seed=7)
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
    source = CsvReplayMarket(paths=[str(path)])  # anomalies injected (the default)
    result = dg.materialize(
        [ingestion.market_snapshots],
        instance=instance,
        partition_key="2026-03-01",
        resources={"warehouse": warehouse, "market_source": source},
        raise_on_error=False,
    )
    assert result.success
    assert warehouse.query("SELECT count(*) AS n FROM raw.anomaly_ground_truth")["n"].iloc[0] == 0


# --------------------------------------------------------------------------- pairs quoted in another coin


NO_SYMBOL = "Date,Open,High,Low,Close"  # the older CryptoDataDownload header: no symbol, no volume


def btc_usdt(tmp_path: Path, closes: list[float], start: datetime = T0) -> Path:
    lines = [
        candle(h, open_=c, close=c, volume_quote=1e6) for h, c in zip(hours(len(closes), start), closes, strict=True)
    ]
    return write(tmp_path, lines, name="Binance_BTCUSDT_1h.csv")


def test_a_btc_quoted_pair_is_converted_hour_by_hour_with_the_btc_usd_series(tmp_path: Path) -> None:
    btc_usdt(tmp_path, [40_000.0, 41_000.0, 42_000.0])
    lines = [f"{h:%Y-%m-%d %I-%p},0.00050,0.00060,0.00040,0.00055" for h in hours(4)]  # the 4th hour has no BTC rate
    etc = write(tmp_path, lines, name="Binance_ETCBTC_1h.csv", header=NO_SYMBOL)
    snapshots, quarantine, reports = load_market_files([str(tmp_path)])
    rows = snapshots[snapshots["coin_id"] == "etc"]
    assert rows["partition_hour"].tolist() == hours(3)
    btc_close = pd.Series([40_000.0, 41_000.0, 42_000.0], index=rows.index)
    for column, in_btc in [("open", 0.0005), ("high", 0.0006), ("low", 0.0004), ("price", 0.00055)]:
        assert rows[column].tolist() == pytest.approx((btc_close * in_btc).tolist()), column
    assert only_reason(quarantine) == "no_quote_usd_rate"
    assert "ETC/BTC: no BTC close in USD at 2021-06-09 23:00 in Binance_BTCUSDT_1h.csv" in quarantine["detail"].iloc[0]
    report = next(r for r in reports if r.name == etc.name)
    assert report.quarantined_by_reason == {"no_quote_usd_rate": 1} and report.rows_kept == 3
    assert "Binance_BTCUSDT_1h.csv" in report.conversions["ETC/BTC"]
    assert_accounted(report)
    batch = csv_window([str(tmp_path)], utc(T0), utc(T0) + timedelta(hours=4))
    assert batch.stats["rows_converted_to_usd"] == 3
    assert any("ETC/BTC converted to USD" in w for w in batch.warnings), batch.warnings


def test_a_btc_quoted_volume_is_converted_too(tmp_path: Path) -> None:
    btc_usdt(tmp_path, [40_000.0])
    header = "unix,date,symbol,open,high,low,close,Volume ETC,Volume BTC,tradecount"
    line = candle(T0, open_=0.0005, high=0.0006, low=0.0004, close=0.00055, volume_quote=2.0, symbol="ETC/BTC")
    write(tmp_path, [line], name="Binance_ETCBTC_1h.csv", header=header)
    snapshots, _, _ = load_market_files([str(tmp_path)])
    etc = snapshots[snapshots["coin_id"] == "etc"].iloc[0]
    assert etc["volume_quote"] == pytest.approx(2.0 * 40_000.0)  # Volume BTC times the hour's BTC close
    assert etc["price"] == pytest.approx(0.00055 * 40_000.0)


def test_without_any_usd_series_of_the_quote_the_pair_is_quarantined_and_the_other_files_land(tmp_path: Path) -> None:
    write(
        tmp_path,
        [f"{h:%Y-%m-%d %I-%p},0.0005,0.0006,0.0004,0.00055" for h in hours(3)],
        "Bitfinex_ETCBTC_1h.csv",
        NO_SYMBOL,
    )
    write(tmp_path, [candle(h, symbol="ETH/USDT") for h in hours(3)], name="Binance_ETHUSDT_1h.csv")
    snapshots, quarantine, reports = load_market_files([str(tmp_path)])
    assert snapshots["coin_id"].tolist() == ["ethereum"] * 3
    assert set(quarantine["reason"]) == {"non_usd_quote"} and len(quarantine) == 3
    assert "no replayed file holds BTC priced in USD" in quarantine["detail"].iloc[0]
    assert [r.quarantined_by_reason for r in reports] == [{}, {"non_usd_quote": 3}]


def test_a_price_read_in_usd_beats_one_converted_from_another_quote(tmp_path: Path) -> None:
    btc_usdt(tmp_path, [40_000.0] * 5)
    write(
        tmp_path,
        [candle(h, symbol="ETC/USDT", close=20.0, open_=20.0) for h in hours(2)],
        name="Binance_ETCUSDT_1h.csv",
    )
    converted = write(
        tmp_path,
        [f"{h:%Y-%m-%d %I-%p},0.0005,0.0006,0.0004,0.00055" for h in hours(5)],
        "Binance_ETCBTC_1h.csv",
        NO_SYMBOL,
    )
    snapshots, quarantine, reports = load_market_files([str(tmp_path)])
    assert snapshots.loc[snapshots["coin_id"] == "etc", "price"].tolist() == [20.0, 20.0]
    assert quarantine.empty
    report = next(r for r in reports if r.name == converted.name)
    assert report.rows_not_used == 5
    assert "a price read in USD before one converted from BTC" in report.venue_choice["etc"]


# --------------------------------------------------------------------------- granularity


def minutes(n: int, start: datetime = T0, step: int = 1) -> list[datetime]:
    return [start + timedelta(minutes=step * i) for i in range(n)]


def minute_lines(times: list[datetime]) -> list[str]:
    """Minute candles whose open rises by 1 a minute (high = close + 1, low = open - 1), 10 USD each."""
    first = times[0]
    return [
        candle(
            t,
            open_=100 + (t - first) / timedelta(minutes=1),
            close=100.5 + (t - first) / timedelta(minutes=1),
            volume_quote=10.0,
        )
        for t in times
    ][::-1]  # newest first, as exported


def test_minute_rows_are_merged_into_hourly_candles(tmp_path: Path) -> None:
    path = write(tmp_path, minute_lines(minutes(180)), name="Binance_BTCUSDT_minute.csv")
    snapshots, quarantine, report = load(path)
    assert quarantine.empty
    assert snapshots["partition_hour"].tolist() == snapshots["observed_at"].tolist() == hours(3)
    for k, row in enumerate(snapshots.itertuples()):
        first, last = 60 * k, 60 * k + 59
        assert (row.open, row.high, row.low, row.price) == (100 + first, 101.5 + last, 99 + first, 100.5 + last)
        assert row.volume_quote == pytest.approx(600.0)  # 60 minutes of 10 USD
    assert (report.interval, report.rows_read, report.rows_kept, report.rows_merged) == ("1m", 180, 3, 177)
    assert report.incomplete_hours == 0 and report.duplicates_removed == 0
    assert_accounted(report)
    batches = [csv_window([str(path)], utc(h), utc(h) + timedelta(hours=1)) for h in hours(3)]
    assert [b.stats["rows_read"] for b in batches] == [60, 60, 60]
    assert [b.stats["rows_merged"] for b in batches] == [59, 59, 59]


def test_an_hour_missing_minutes_is_flagged_not_presented_as_complete(tmp_path: Path) -> None:
    times = [t for t in minutes(180) if t != T0 + timedelta(hours=1, minutes=30)]
    path = write(tmp_path, minute_lines(times), name="Binance_BTCUSDT_minute.csv")
    snapshots, _, report = load(path)
    assert snapshots["volume_quote"].tolist() == pytest.approx([600.0, 590.0, 600.0])
    assert report.incomplete_hours == 1 and report.rows_merged == 176
    assert any("1 hourly candles are incomplete" in w for w in report.warnings())
    batch = csv_window([str(path)], utc(T0), utc(T0) + timedelta(hours=3))
    assert batch.stats["incomplete_hours"] == 1
    assert any("incomplete" in w for w in batch.warnings), batch.warnings


def test_a_duplicated_minute_follows_the_duplicate_rules_before_merging(tmp_path: Path) -> None:
    lines = minute_lines(minutes(120))
    path = write(tmp_path, [lines[0], *lines], name="Binance_BTCUSDT_minute.csv")
    snapshots, quarantine, report = load(path)
    assert only_reason(quarantine) == "exact_duplicate"
    assert snapshots["volume_quote"].tolist() == pytest.approx([600.0, 600.0])
    assert (report.rows_read, report.rows_kept, report.rows_merged, report.duplicates_removed) == (121, 2, 118, 1)


@pytest.mark.parametrize(
    "times, interval",
    [
        ([T0, T0 + timedelta(minutes=1), *minutes(36, T0 + timedelta(minutes=5), step=5)], "5m"),  # a stray first row
        ([T0, *hours(8, T0 + timedelta(hours=3))], "1h"),  # the first two rows straddle a gap
    ],
)
def test_the_interval_is_the_median_spacing_not_the_first_rows(
    tmp_path: Path, times: list[datetime], interval: str
) -> None:
    _, _, report = load(write(tmp_path, [candle(t) for t in times]))
    assert report.interval == interval
    assert report.rows_kept == len({t.replace(minute=0) for t in times})


@pytest.mark.parametrize(
    "step, spacing", [(timedelta(days=1), "1d"), (timedelta(hours=4), "4h"), (timedelta(days=7), "7d")]
)
def test_candles_coarser_than_hourly_are_refused(tmp_path: Path, step: timedelta, spacing: str) -> None:
    write(tmp_path, [candle(T0 + i * step) for i in range(30)], name="Binance_BTCUSDT_d.csv")
    write(tmp_path, [candle(h, symbol="ETH/USDT") for h in hours(2)], name="Binance_ETHUSDT_1h.csv")
    snapshots, _, reports = load_market_files([str(tmp_path)])
    assert snapshots["coin_id"].tolist() == ["ethereum", "ethereum"]
    refused = reports[0]
    assert refused.unreadable.startswith(f"its rows are {spacing} apart (median spacing): coarser than hourly")
    assert refused.rows_read == 0


# --------------------------------------------------------------------------- compressed exports, folders


def export(lines: list[str], header: str = HEADER) -> str:
    return "\n".join([header, *lines]) + "\n"


def test_gzip_and_zip_exports_are_read_and_every_other_file_is_listed(tmp_path: Path) -> None:
    (tmp_path / "Binance_BTCUSDT_1h.csv.gz").write_bytes(gzip.compress(export([candle(h) for h in hours(2)]).encode()))
    with zipfile.ZipFile(tmp_path / "alts.zip", "w") as archive:
        bad = candle(T0 + timedelta(hours=1), symbol="ETH/USDT", close=0.0, low=0.0)
        archive.writestr("Binance_ETHUSDT_1h.csv", export([candle(T0, symbol="ETH/USDT"), bad]))
        archive.writestr("2021/Binance_ADAUSDT_1h.csv", export([candle(h, symbol="ADA/USDT") for h in hours(2)]))
        archive.writestr("readme.txt", "not data")
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "old").mkdir()
    snapshots, quarantine, reports = load_market_files([str(tmp_path)])
    assert sorted(snapshots["coin_id"]) == ["bitcoin", "bitcoin", "cardano", "cardano", "ethereum"]
    assert quarantine["source_ref"].tolist() == ["alts.zip!Binance_ETHUSDT_1h.csv:3"]
    by_name = {r.name: r for r in reports}
    assert set(by_name) == {
        "Binance_BTCUSDT_1h.csv.gz",
        "alts.zip!Binance_ETHUSDT_1h.csv",
        "alts.zip!2021/Binance_ADAUSDT_1h.csv",
        "alts.zip!readme.txt",
        "notes.txt",
        "old",
    }
    assert by_name["notes.txt"].skipped.startswith("not a market file: .txt")
    assert by_name["alts.zip!readme.txt"].skipped.startswith("not a market file: .txt")
    assert by_name["old"].skipped.startswith("a folder")
    batch = csv_window([str(tmp_path)], utc(T0), utc(T0) + timedelta(hours=2))
    assert batch.stats["files_skipped"] == 3
    assert sum("skipped, not imported" in w for w in batch.warnings) == 3, batch.warnings


@pytest.mark.parametrize("name", ["Binance_BTCUSDT_1h.csv.gz", "Binance_BTCUSDT_1h.csv", "Binance_BTCUSDT_1h.zip"])
def test_a_compressed_file_given_by_name_is_read(tmp_path: Path, name: str) -> None:
    text = export([candle(h) for h in hours(3)])
    path = tmp_path / name
    if name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("Binance_BTCUSDT_1h.csv", text)
    else:  # gzip, also under a plain .csv name: the first bytes tell
        path.write_bytes(gzip.compress(text.encode()))
    snapshots, _, (report,) = load_market_files([str(path)])
    assert snapshots["partition_hour"].tolist() == hours(3)
    assert report.unreadable is None and report.rows_kept == 3


def test_a_broken_archive_is_reported_unreadable_with_the_reason(tmp_path: Path) -> None:
    write(tmp_path, [candle(h) for h in hours(2)], name="good.csv")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(export([candle(T0, symbol="ETH/USDT")]).encode())[:20])
    with zipfile.ZipFile(tmp_path / "docs.zip", "w") as archive:
        archive.writestr("readme.txt", "no data")
    snapshots, _, reports = load_market_files([str(tmp_path)])
    assert len(snapshots) == 2
    why = {r.name: r.unreadable for r in reports}
    assert why["broken.zip"].startswith("not a readable zip archive (BadZipFile")
    assert why["cut.csv.gz"].startswith("cannot be read as text CSV or Parquet (EOFError")
    assert why["docs.zip"].startswith("the zip archive holds no market file") and "readme.txt" in why["docs.zip"]
    assert csv_window([str(tmp_path)], utc(T0), utc(T0) + timedelta(hours=1)).stats["files_unreadable"] == 3


# --------------------------------------------------------------------------- venues: one series per coin


@pytest.mark.parametrize(
    "name, symbol",
    [
        ("Binance_BTCUSDT_futures_1h.csv", "BTC/USDT"),
        ("Binance_F_BTCUSDT_1h.csv", "BTCUSDT"),
        ("Binance_BTCUSDT_PERP_1h.csv", "BTCUSDT_PERP"),
        ("KuCoin_XBTUSDTM_1h.csv", "XBTUSDTM"),
        ("Deribit_BTC-PERPETUAL_1h.csv", "BTC-PERPETUAL"),
        ("FTX_BTC-PERP_1h.csv", None),  # no symbol column: the file name gives the perpetual
    ],
)
def test_spot_is_used_over_futures_for_the_whole_series(tmp_path: Path, name: str, symbol: str | None) -> None:
    write(tmp_path, [candle(h, close=100.5) for h in hours(10)], name="Binance_BTCUSDT_1h.csv")
    later = hours(20, start=T0 + timedelta(hours=5))  # begins mid-series and has more hours
    if symbol is None:
        write(tmp_path, [f"{h:%Y-%m-%d %I-%p},100,102.5,99,101.5" for h in later], name=name, header=NO_SYMBOL)
    else:
        write(tmp_path, [candle(h, close=101.5, symbol=symbol) for h in later], name=name)
    snapshots, quarantine, reports = load_market_files([str(tmp_path)])
    assert snapshots["partition_hour"].tolist() == hours(10)
    assert snapshots["price"].tolist() == [100.5] * 10  # not one futures row stitched in
    assert quarantine.empty
    by_name = {r.name: r for r in reports}
    futures, spot = by_name[name], by_name["Binance_BTCUSDT_1h.csv"]
    assert (futures.rows_kept, futures.rows_not_used) == (0, 20)
    assert_accounted(futures)
    assert "taken from Binance_BTCUSDT_1h.csv (spot before futures/perpetual)" in futures.venue_choice["bitcoin"]
    assert f"chosen over {name}" in spot.venue_choice["bitcoin"]


def test_one_exchange_is_used_per_coin_whatever_the_order_or_the_window(tmp_path: Path) -> None:
    a, b = tmp_path / "exchange_a", tmp_path / "exchange_b"
    a.mkdir()
    b.mkdir()
    write(a, [candle(h, close=100.5, symbol="LTC/USDT") for h in hours(24)], name="Binance_LTCUSDT_1h.csv")
    gap = T0 + timedelta(hours=10)
    b_hours = [h for h in hours(30, start=T0 - timedelta(hours=3)) if h != gap]  # 29 hours, one gap
    write(b, [candle(h, close=101.5, symbol="LTC/USDT") for h in b_hours], name="Binance_LTCUSDT_1h.csv")
    for order in ([a, b], [b, a]):
        snapshots, _, reports = load_market_files([str(p) for p in order])
        assert snapshots["partition_hour"].tolist() == b_hours  # the gap stays a gap: nothing patched from a
        assert set(snapshots["price"]) == {101.5}
        assert {Path(r.path).parent.name: r.rows_not_used for r in reports} == {"exchange_a": 24, "exchange_b": 0}
    starts = [T0 - timedelta(hours=6) + timedelta(hours=6 * i) for i in range(7)]
    batches = [csv_window([str(a), str(b)], utc(s), utc(s) + timedelta(hours=6)) for s in starts]
    assert sum(len(x.snapshots) for x in batches) == 29 and sum(x.stats["rows_not_used"] for x in batches) == 24
    assert all(set(x.snapshots["price"]) <= {101.5} for x in batches)


def test_files_of_one_venue_split_by_year_are_one_series(tmp_path: Path) -> None:
    write(tmp_path, [candle(h) for h in hours(3, datetime(2020, 12, 31, 21))], name="Binance_BTCUSDT_2020_1h.csv")
    write(tmp_path, [candle(h) for h in hours(3, datetime(2021, 1, 1))], name="Binance_BTCUSDT_2021_1h.csv")
    snapshots, _, reports = load_market_files([str(tmp_path)])
    assert len(snapshots) == 6
    assert [(r.rows_kept, r.rows_not_used, r.venue_choice) for r in reports] == [(3, 0, {}), (3, 0, {})]


def test_equal_venues_are_told_apart_by_file_name_in_any_order(tmp_path: Path) -> None:
    a = write(tmp_path, [candle(h, close=100.5, symbol="BTC/USD") for h in hours(2)], name="Bitstamp_BTCUSD_1h.csv")
    b = write(tmp_path, [candle(h, close=101.5, symbol="BTC/USD") for h in hours(2)], name="Kraken_BTCUSD_1h.csv")
    for order in ([a, b], [b, a]):
        snapshots, _, reports = load_market_files([str(p) for p in order])
        assert snapshots["price"].tolist() == [100.5, 100.5]
        kraken = next(r for r in reports if r.name == b.name)
        assert "as many readable hours (2); the first file name wins" in kraken.venue_choice["bitcoin"]


# --------------------------------------------------------------------------- command line


def cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        csv_replay.main(argv)
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_command_line_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "nope.csv: no such file or directory" in cli_error([str(tmp_path / "nope.csv")], capsys)
    (tmp_path / "notes.txt").write_text("nothing here")
    assert "folder holds no market files" in cli_error([str(tmp_path)], capsys)
    assert "notes.txt: no recognisable header" in cli_error([str(tmp_path / "notes.txt")], capsys)


def test_command_line_error_without_a_traceback_when_run_as_a_module(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "crypto_assets.market.csv_replay", str(tmp_path / "nope.csv")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.strip().endswith("nope.csv: no such file or directory") and run.stderr.count("\n") == 1


def test_a_header_only_file_says_it_has_no_data_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_replay.main([str(write(tmp_path, []))])
    out = capsys.readouterr().out
    assert "has a header but no data rows" in out
    assert "neither base nor quote" not in out


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
