"""The ``csv`` market source: replays market files as hourly USD candles, quarantining every bad record.

Files and archives: ``paths`` are files or folders. In a folder, the files named ``*.csv``,
``*.csv.gz``, ``*.csv.bz2``, ``*.csv.xz``, ``*.zip`` or ``*.parquet`` are read (sorted by name); every
other entry (``README.md``, a sub-folder) is listed in the report as skipped, with why: nothing in a
folder is passed over silently. A file given by name is read whatever its name. Content is
recognised by its first bytes, not its name: gzip, bzip2 and xz are decompressed; each market member
of a zip archive is read as a file of its own, named ``<archive>!<member>`` (other members are
listed as skipped; a zip inside a zip is not opened); text is UTF-8 (a BOM allowed) or UTF-16 with a
BOM. An archive or compressed file that cannot be opened is reported unreadable with the reason.

Input formats (column names are matched case-insensitively, spaces and underscores alike):

1. CryptoDataDownload-style OHLCV candles, hourly or finer, e.g. ``Binance_BTCUSDT_1h.csv``:

   - an optional extra line before the header (a URL, or ``Created on <date>,<url>``);
   - header ``unix,date,symbol,open,high,low,close,Volume <BASE>,Volume <QUOTE>[,tradecount]`` or
     ``Unix Timestamp,Date,Symbol,Open,High,Low,Close,Volume``. Required: open, high, low, close,
     at least one of unix / date, and the pair: a ``symbol`` column or, without one, the file name:
     its first ``_``-separated word after the exchange that reads as a pair
     (``Bitstamp_BTCUSD_1h.csv``, ``Binance_ETCBTC_2021_minute.csv``, ``FTX_BTC-PERP_1h.csv``);
   - ``unix`` in seconds (integer or float), milliseconds or microseconds, told apart by magnitude;
     ``date`` as ``2021-06-09 23:00:00`` (any ISO-8601) or ``2017-08-17 06-AM``. When the file has
     both, both must read. ``unix`` wins: ``observed_at`` (the candle's open) is taken from it. A
     date that differs from unix by a time-zone offset (a multiple of 15 minutes, at most 14 hours)
     is a mislabelled date, not a bad row: the row is kept and counted as
     ``date_disagrees_with_unix``. The real BTC and ETH files hold 91 rows each (2017-09-22 19:00 to
     09-26 18:00 by unix) whose date is 4 hours behind, US Eastern daylight time, and their prices
     chain with their neighbours' on unix, not on date. Any other disagreement is
     ``timestamp_mismatch``. Times before 2009-01-03 or from 2100 on do not read (a ``1`` is not
     1970);
   - ``symbol`` a pair ``BASE/QUOTE`` (or ``BASE-QUOTE``, ``BASE_QUOTE``, or ``BASEQUOTE`` ending in a
     known quote: a USD-like one, or one of ``OTHER_QUOTES`` such as BTC, ETH, EUR); ``XBT`` is BTC.
     Derivative markers around the pair are recognised (see Venues);
   - ``volume_quote`` is the ``Volume <QUOTE>`` column (any USD-like one for a USD-like quote), else
     ``Volume <BASE>`` times close. A single ``Volume`` column is in base units, as in the
     single-volume exports, so ``volume_quote = volume * close``. A volume column naming neither the
     base nor the quote (``Volume XYZ`` in a BTC/USD file) is not guessed at: the file's report
     lists it under ``unused_columns`` and counts the rows left without a volume. A missing volume
     (``NULL``, empty, ``nan``) keeps the row with a NULL ``volume_quote``; a zero volume is kept as
     zero (an hour that traded nothing);
   - rows in any order (the exports are newest first); ``tradecount`` may be ``NULL``.

2. Plain CSV, or Parquet (``.parquet``), with ``coin_id, symbol, observed_at, price`` and optional
   ``open, high, low, volume_quote, market_cap``: prices in USD, ``observed_at`` ISO-8601 (naive
   means UTC) or unix seconds. These are observations at instants, not candles: no interval is
   detected, and an hour keeps its latest observation (see De-duplication).

A file that cannot be read as a market file at all (no recognisable header, a required column
missing, no pair anywhere, no readable time in any record, candles coarser than hourly) is reported
as unreadable with the reason, and the other files are imported; only when no file is readable does
loading raise ``ValueError``. Columns a file has but the importer cannot use are listed in its
report; a file with a header and no data rows says so.

Interval: a candle file's interval is the median spacing of its distinct times, per coin (robust to
gaps, duplicates and a stray row; not the first two rows), and its report gives it. Hourly files are
read as they are; a file with one time per coin is taken as hourly (``1h (assumed)``). Finer rows
(1m, 5m, 15m, 30m, any spacing under an hour) are de-duplicated per (coin, time) by the rules under
De-duplication, then merged into hourly candles: open of the hour's first row, high the max, low the min, close of
the last row, volumes summed (NULL when a row lacks its volume), ``observed_at`` the hour. An hour
with fewer rows than the interval fits in an hour (59 of 60 minutes) is kept, never presented as
complete: it is counted as ``incomplete_hours`` in the report and the window's stats, and said in a
warning. Coarser files (2h, 4h, daily, weekly) are refused as unreadable, with their spacing:
hourly candles cannot be made from them.

Quarantine: rejected records get one reason, checked in this order: ``missing_column`` /
``extra_column`` (field count differs from the header), ``missing_field`` (symbol or coin_id empty),
``unparseable_timestamp``, ``timestamp_mismatch`` (unix and date name different hours),
``unknown_pair`` (the symbol reads as no base and quote), ``missing_price``, ``non_numeric``,
``non_positive_price``, ``negative_volume``, ``bad_tick``; then, for the rows of the venue chosen
for their coin, the de-duplication reasons, and the USD conversion ones: ``no_quote_usd_rate`` and
``non_usd_quote`` (see Quotes). ``source_ref`` is ``<file name>:<line number>`` (for Parquet, the
1-based row number; for an hourly candle merged from finer rows, its first row) and ``raw_record``
the line as read (for Parquet, the row's values joined by commas).

Bad tick: OHLC out of order (low above min(open, close) or high below max(open, close)), or open
and close more than a factor ``MAX_BODY_RATIO`` (2) apart, or high more than ``MAX_RANGE_RATIO``
(4) times low. The oldest BTC row (open = high = 16199.91, close 4308.83: 3.8x) and ETH row
(open 652.74, close 300.79: 2.2x) are wrong opens, while the largest real hourly body in the four
shared files is 1.18x. Wicks are allowed further than bodies because thin books really print
them: ETH 2017-08-22 04:00 (open 280, low 144.21, close 287; range 2.14x) is kept for the anomaly
detectors to see. Finer rows are checked one by one, before they are merged.

Venues: a coin's series comes from one venue for all its hours, never spliced hour by hour across
exchanges or instruments. A venue is one instrument of one exchange, recognised as: the folder (or
archive), the file name without its numbers (years, dates, parts) and interval words (``1h``,
``minute``, ``hourly``...), the pair (base and quote) and spot or derivative. So
``Binance_BTCUSDT_2020_minute.csv`` and ``Binance_BTCUSDT_2021_minute.csv`` in one folder are one
series, while the same coin in another folder, another exchange's file, another quote or a futures
file is another venue. Derivative markers: file-name words (split on ``_``, ``-``, ``.``, spaces)
``f``, ``fut``, ``future(s)``, ``perp(s)``, ``perpetual(s)``, ``swap(s)``, ``delivery``,
``derivative(s)`` or a word ending in ``usdtm``; symbols ending in ``PERP`` / ``-PERP`` / ``_PERP``,
``PERPETUAL``, ``SWAP``, an expiry (``BTCUSDT_220325``, ``BTC-25JUN21``), a settlement
(``BTC/USDT:USDT``) or a margined quote (``XBTUSDTM``, ``BTCUSDM``); a bare ``BTC-PERP`` is priced in
USD (FTX, Deribit). The venue chosen for a coin is the first by:

1. prices read in USD before prices converted from another quote;
2. spot before derivative (futures, perpetual);
3. most readable hours (distinct hours with an accepted row; for a converted venue, those the
   quote's USD series has too);
4. smallest file name, then path.

None of these depend on the window read or on the order of the files. The rows of the other venues
are not used (not quarantined one by one: they are good rows of another series): each such file's
report counts them as ``rows_not_used`` and says which file was used and why, and the chosen
file's report names the ones it was chosen over. Their bad records are still quarantined.

Quotes: rows are stored in USD. USD-like quotes (``schema.USD_QUOTES``) are taken as USD. Another
quote (ETC/BTC, BTC/EUR) is converted through the quote's own USD series when the replayed files
hold one, read directly in USD (the series chosen for that coin; conversions do not chain): open,
high, low, close and the quote volume are each multiplied by the quote's close of the same hour.
The files hold no intra-hour cross rates, and one rate per hour keeps the candle's shape (its ratios
and its order) as traded. The file's report notes each conversion and its rate file. Hours the
quote's series lacks are quarantined as ``no_quote_usd_rate``; when the files hold no USD series of
the quote at all, the pair's rows are quarantined as ``non_usd_quote``.

De-duplication: one row per (coin_id, partition_hour) within the venue chosen for the coin (finer
rows: first per (coin_id, observed_at) within their file, then merged). The real duplicates
(2,649 hours in 2020 in BTC and ETH) pair a full-precision row (ms timestamp, trade count) with a
copy rounded to 2 decimals from an older export; a handful differ for real, e.g. BTC 2020-11-20
07:00 where the older copy has 19% less volume and another close: it was exported while that
candle was still forming. The kept row is the first by:

1. latest ``observed_at`` (plain snapshots: the hour's last observation);
2. largest quote volume, volumes within a cent of the largest counting as equal (rounding): a
   finished candle has traded at least as much as any snapshot of it taken while it was forming;
3. a row with a trade count (the full-precision export);
4. smallest raw record text, then file and line (only reached by identical records).

None of these depend on file order. Losers are quarantined as ``duplicate_hour``, or
``exact_duplicate`` when all their values equal the kept row's; ``detail`` names the kept row.

Accounting: every data record (non-blank line after the header, or Parquet row) counts in
``rows_read`` and ends in exactly one place, so ``rows_read == rows_kept + rows_merged +
duplicates_removed + quarantined + rows_not_used``. ``rows_merged`` counts the finer rows folded
into another row's hourly candle (an hour of 60 minute rows: one candle, 59 merged); the candle
itself counts where it ended (kept, duplicate, quarantined or not used). Without finer rows or
rival venues this is ``rows_read == rows_kept + duplicates_removed + quarantined``. De-duplicated
rows are in the quarantine frame too, but counted as ``duplicates_removed``, not in ``quarantined``
/ ``quarantined_by_reason``.

Windows: a record belongs to the window holding its ``partition_hour``. A record whose time is
unreadable (``partition_hour`` NULL) belongs to the window holding the earliest readable hour of
its file, so each is recorded exactly once. Every window's batch carries the unreadable and skipped
files and those without data rows as ``warnings``, and each file's notes (unused columns,
conversions, venue choices, incomplete hours) when it has rows in the window, so each ingestion run
says them.

Command line: ``python -m crypto_assets.market.csv_replay PATH...`` prints the per-file report; an
error (a missing path, a folder without market files, no readable file) is one line on stderr and
exit code 1.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import functools
import gzip
import io
import lzma
import re
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from crypto_assets.market.schema import (
    QUARANTINE_COLUMNS,
    SNAPSHOT_COLUMNS,
    USD_QUOTES,
    SourceBatch,
    conform,
    utc_naive,
)
from crypto_assets.market.universe import coin_id_for_symbol

SOURCE = "csv"
MAX_BODY_RATIO = 2.0
MAX_RANGE_RATIO = 4.0
VOLUME_TIE_USD = 0.01  # the older export rounds volumes to cents
ERA = (datetime(2009, 1, 3), datetime(2100, 1, 1))  # readable market times: Bitcoin's genesis block onwards
HOUR = pd.Timedelta(hours=1)

MARKET_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".zip", ".parquet")
_MEMBER_SUFFIXES = tuple(s for s in MARKET_SUFFIXES if s != ".zip")  # a zip inside a zip is not opened
_DECOMPRESSORS: dict[bytes, Callable[[bytes], bytes]] = {
    b"\x1f\x8b": gzip.decompress,
    b"BZh": bz2.decompress,
    b"\xfd7zXZ\x00": lzma.decompress,
}
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an archive with members, an empty archive
_PARQUET_MAGIC = b"PAR1"
# Everything opening, decompressing or decoding a file can raise for a broken or foreign file.
_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    NotImplementedError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
)

_NULLS = frozenset({"", "null", "nan", "none", "nat", "na", "n/a"})
_ALIASES = {
    "unix timestamp": "unix",
    "coin id": "coin_id",
    "observed at": "observed_at",
    "volume quote": "volume_quote",
    "market cap": "market_cap",
    "trade count": "tradecount",
}
_CANDLE_REQUIRED = ("open", "high", "low", "close")
_PLAIN_REQUIRED = ("coin_id", "symbol", "observed_at", "price")
_KNOWN = {*_CANDLE_REQUIRED, *_PLAIN_REQUIRED, "unix", "date", "tradecount", "volume", "volume_quote", "market_cap"}
MAX_DATE_OFFSET = pd.Timedelta(hours=14)  # the widest time-zone offset (UTC+14)
_PRICES = ("open", "high", "low", "price")  # `price` is the candle close
_DUPLICATE_REASONS = ("duplicate_hour", "exact_duplicate")

# Quotes a glued symbol (ETCBTC) may end in besides the USD-like ones.
OTHER_QUOTES = frozenset({"BTC", "XBT", "ETH", "BNB", "EUR", "GBP", "JPY", "KRW", "TRY", "AUD", "CAD", "CHF", "BRL"})
_SYMBOL_ALIASES = {"XBT": "BTC"}  # Kraken's and KuCoin's ticker for bitcoin
_GLUED_PAIR = re.compile(rf"([A-Z0-9]+?)({'|'.join(sorted(USD_QUOTES | OTHER_QUOTES, key=len, reverse=True))})")
_SEPARATED_PAIR = re.compile(r"([A-Z0-9]+)[/\-_]([A-Z0-9]+)")
# A derivative's symbol: BTC-PERP, BTCUSDT_PERP, BTC-PERPETUAL, BTC-SWAP, an expiry (BTCUSDT_220325,
# BTC-25JUN21), a settlement currency (BTC/USDT:USDT), a margined quote (XBTUSDTM, BTCUSDM).
_DERIVATIVE_SYMBOLS = (
    re.compile(r"(.+?)(?:[-_/ ]?(?:PERPETUAL|PERP|SWAP)|[-_](?:\d{6}|\d{8}|\d{1,2}[A-Z]{3}\d{2}))"),
    re.compile(r"(.+?):[A-Z0-9]+(?:-\d{6})?"),
    re.compile(r"(.+(?:USDT|USDC|USD))M"),
)
_DERIVATIVE_WORDS = frozenset(
    {"f", "fut", "future", "futures", "perp", "perps", "perpetual", "perpetuals", "swap", "swaps", "delivery"}
    | {"derivative", "derivatives"}
)
# File-name words that do not tell venues apart: numbers (years, dates, parts, "(1)") and intervals.
_SERIES_NOISE = re.compile(r"\(?\d+\)?|\d*(?:s|m|min|mins|minute|minutes|h|hr|hour|hours|hourly|d|day|days|daily)")


@dataclass(frozen=True)
class FileReport:
    """Import figures for one file or archive member.

    ``rows_read == rows_kept + rows_merged + duplicates_removed + quarantined + rows_not_used``.
    """

    path: str
    rows_read: int
    rows_kept: int
    duplicates_removed: int
    quarantined_by_reason: dict[str, int]  # excludes de-duplicated rows
    first_hour: datetime | None  # first and last kept hour
    last_hour: datetime | None
    gaps: int  # missing hours between consecutive kept hours, summed over coins
    unreadable: str | None = None  # why the file could not be read at all (then every count is 0)
    unused_columns: dict[str, str] = field(default_factory=dict)  # column -> why it was not used
    rows_without_volume: int = 0  # kept rows with a NULL volume_quote (blank, or no usable volume column)
    date_disagrees_with_unix: int = 0  # kept rows whose date is off unix by a time-zone offset
    member: str | None = None  # the member's name when ``path`` is a zip archive
    skipped: str | None = None  # why an entry of a folder or archive is not a market file (then every count is 0)
    interval: str | None = None  # the spacing the file was read at: "1h", "1m"...; "snapshots" for plain files
    rows_merged: int = 0  # finer rows folded into another row's hourly candle
    incomplete_hours: int = 0  # kept hourly candles merged from fewer rows than the hour holds
    rows_not_used: int = 0  # accepted rows of coins whose series is taken from another venue
    venue_choice: dict[str, str] = field(default_factory=dict)  # coin_id -> which venue was used and why
    conversions: dict[str, str] = field(default_factory=dict)  # pair -> how it was converted to USD

    @property
    def name(self) -> str:
        """The file name as reports and ``source_ref`` show it (``archive.zip!member.csv`` for a member)."""
        return Path(self.path).name + (f"!{self.member}" if self.member else "")

    @property
    def key(self) -> str:
        return self.path + (f"!{self.member}" if self.member else "")

    @property
    def quarantined(self) -> int:
        return sum(self.quarantined_by_reason.values())

    def warnings(self) -> list[str]:
        """What this file's import could not use or had to decide, in words (empty when nothing)."""
        name = self.name
        if self.skipped:
            return [f"{name}: skipped, not imported: {self.skipped}"]
        if self.unreadable:
            return [f"{name}: unreadable, not imported: {self.unreadable}"]
        out = [f"{name}: has a header but no data rows"] if self.rows_read == 0 else []
        out += [f"{name}: column {c!r} not used ({why})" for c, why in self.unused_columns.items()]
        if self.rows_without_volume:
            out.append(f"{name}: {self.rows_without_volume:,} kept rows have no usable volume")
        if self.date_disagrees_with_unix:
            out.append(
                f"{name}: {self.date_disagrees_with_unix:,} rows have a date off unix by a time-zone offset; "
                "unix was used"
            )
        if self.incomplete_hours:
            out.append(
                f"{name}: {self.incomplete_hours:,} hourly candles are incomplete: merged from fewer {self.interval} "
                "rows than an hour holds"
            )
        out += [f"{name}: {pair} {note}" for pair, note in self.conversions.items()]
        out += [f"{name}: {note}" for note in self.venue_choice.values()]
        return out


@dataclass(frozen=True)
class _Entry:
    """One thing to read: a file, or a member of a zip archive, with its file's identity for the caches."""

    file: str  # resolved path of the file or archive
    member: str | None
    mtime_ns: int
    size: int
    skipped: str | None = None  # not a market file (a folder's README.md): listed, not read
    unreadable: str | None = None  # known before reading (an archive that does not open)

    @property
    def key(self) -> str:
        return self.file + (f"!{self.member}" if self.member else "")

    @property
    def name(self) -> str:
        return Path(self.file).name + (f"!{self.member}" if self.member else "")

    @property
    def file_name(self) -> str:
        """The name of the file itself: the member's base name for an archive member."""
        return (self.member or self.file).replace("\\", "/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class _Parsed:
    """One file's interpreted records (finer rows already merged), and what its report needs beyond them."""

    records: pd.DataFrame
    unused_columns: dict[str, str]
    interval: str | None
    rows_read: int


@dataclass(frozen=True)
class _Loaded:
    snapshots: pd.DataFrame  # snapshot columns + _path, _merged, _incomplete, _converted, _date_disagrees
    quarantine: pd.DataFrame  # quarantine columns + _path, _anchor (window-assignment hour), _dup, _merged
    unused: pd.DataFrame  # accepted rows of other venues: _path, _anchor, _merged
    reports: list[FileReport]


@dataclass(frozen=True)
class _Fields:
    """A file's records as text, keyed by canonical column name, before any interpretation."""

    entry: _Entry
    names: list[str]
    text: pd.DataFrame  # one text column per header name, plus _raw, _line, _nfields


# --------------------------------------------------------------------------- public API


def load_market_files(paths: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[FileReport]]:
    """Clean snapshots and quarantine for all time, plus a report per file, archive member or skipped entry.

    ``paths`` are files or folders (see the module docstring). Raises ``ValueError`` for a missing
    path, a folder without market files, or when no file is readable.
    """
    loaded = _load(paths)
    now = utc_naive(datetime.now(UTC))
    return _snapshots_out(loaded.snapshots, now), _quarantine_out(loaded.quarantine, now), list(loaded.reports)


def csv_window(paths: Sequence[str], start: datetime, end: datetime) -> SourceBatch:
    """The replayed rows and rejections of the window [start, end) (tz-aware UTC; naive = UTC)."""
    window_start, window_end = utc_naive(start), utc_naive(end)
    if window_end <= window_start:
        raise ValueError(f"end must be after start, got start={window_start} end={window_end}")
    loaded = _load(paths)

    def inside(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        return frame[(frame[column] >= window_start) & (frame[column] < window_end)]

    snaps = inside(loaded.snapshots, "partition_hour")
    quar = inside(loaded.quarantine, "_anchor")
    unused = inside(loaded.unused, "_anchor")
    duplicates = int(quar["_dup"].sum())
    merged = int(snaps["_merged"].sum() + quar["_merged"].sum() + unused["_merged"].sum())
    now = utc_naive(datetime.now(UTC))
    files = set(snaps["_path"]) | set(quar["_path"]) | set(unused["_path"])
    return SourceBatch(
        snapshots=_snapshots_out(snaps, now),
        quarantine=_quarantine_out(quar, now),
        stats={
            "rows_read": len(snaps) + merged + len(quar) + len(unused),
            "rows_kept": len(snaps),
            "rows_merged": merged,
            "duplicates_removed": duplicates,
            "quarantined": len(quar) - duplicates,
            "rows_not_used": len(unused),
            "files": len(files),
            "files_unreadable": sum(1 for r in loaded.reports if r.unreadable),
            "files_skipped": sum(1 for r in loaded.reports if r.skipped),
            "rows_without_usable_volume": int(snaps["volume_quote"].isna().sum()),
            "date_disagrees_with_unix": int(snaps["_date_disagrees"].sum()),
            "incomplete_hours": int(snaps["_incomplete"].sum()),
            "rows_converted_to_usd": int(snaps["_converted"].sum()),
        },
        # Files without rows belong to no window: every window says them. Notes, for the files in it.
        warnings=[w for r in loaded.reports if r.rows_read == 0 or r.key in files for w in r.warnings()],
    )


def format_reports(reports: Sequence[FileReport]) -> str:
    """The per-file import table printed by ``python -m crypto_assets.market.csv_replay``."""

    def hour(ts: datetime | None) -> str:
        return ts.strftime("%Y-%m-%d %H:%M") if ts is not None else "-"

    rows = [
        (
            r.name,
            f"{r.rows_read:,}",
            f"{r.rows_kept:,}",
            f"{r.duplicates_removed:,}",
            f"{r.quarantined:,}",
            f"{r.rows_merged:,}",
            f"{r.rows_not_used:,}",
            r.interval or "-",
            hour(r.first_hour),
            hour(r.last_hour),
            f"{r.gaps:,}",
            ", ".join(f"{k}={v:,}" for k, v in sorted(r.quarantined_by_reason.items())) or "-",
            "; ".join(w.removeprefix(f"{r.name}: ") for w in r.warnings()) or "-",
        )
        for r in reports
    ]
    header = (
        "file",
        "read",
        "kept",
        "dedup",
        "quar.",
        "merged",
        "not used",
        "interval",
        "first hour",
        "last hour",
        "gaps",
        "quarantined by reason",
        "notes",
    )
    align = ("left", *["right"] * 6, "left", "left", "left", "right", "left", "left")
    return tabulate(rows, headers=header, colalign=align, disable_numparse=True)


# --------------------------------------------------------------------------- files, folders, archives


def _resolve(paths: Sequence[str]) -> list[_Entry]:
    entries: list[_Entry] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            children = sorted(path.iterdir(), key=lambda p: p.name)
            if not any(_is_market_name(c.name, MARKET_SUFFIXES) and c.is_file() for c in children):
                held = ", ".join(c.name for c in children[:5]) + (", ..." if len(children) > 5 else "")
                raise ValueError(
                    f"{path}: folder holds no market files ({', '.join(MARKET_SUFFIXES)}); "
                    + (f"it holds {held}" if children else "it is empty")
                )
            for child in children:
                if child.is_file() and _is_market_name(child.name, MARKET_SUFFIXES):
                    entries.extend(_entries_of(child))
                else:
                    entries.append(_Entry(str(child.absolute()), None, 0, 0, skipped=_why_skipped(child)))
        elif path.is_file():
            entries.extend(_entries_of(path))
        else:
            raise ValueError(f"{path}: no such file or directory")
    if not entries:
        raise ValueError("no market files given")
    unique: dict[str, _Entry] = {}
    for entry in entries:
        unique.setdefault(entry.key, entry)  # a file given twice is read once
    return list(unique.values())


def _is_market_name(name: str, suffixes: Sequence[str]) -> bool:
    return name.lower().endswith(tuple(suffixes))


def _why_skipped(path: Path) -> str:
    if path.is_dir():
        return "a folder (folders inside a given folder are not searched)"
    if not path.is_file():
        return "not a regular file"
    return f"not a market file: {path.suffix or 'no extension'} (read are {', '.join(MARKET_SUFFIXES)})"


def _entries_of(path: Path) -> list[_Entry]:
    """The file, or each member of a zip archive (recognised by its name or its first bytes)."""
    file = str(path.resolve())
    try:
        stat = path.stat()
        with path.open("rb") as handle:
            is_zip = path.name.lower().endswith(".zip") or handle.read(4) in _ZIP_MAGIC
    except OSError as exc:
        return [_Entry(file, None, 0, 0, unreadable=f"cannot be opened ({type(exc).__name__}: {exc})")]
    whole = _Entry(file, None, stat.st_mtime_ns, stat.st_size)
    if not is_zip:
        return [whole]
    try:
        members = _zip_members(file, stat.st_mtime_ns, stat.st_size)
    except (zipfile.BadZipFile, OSError) as exc:
        return [_Entry(*_identity(whole), unreadable=f"not a readable zip archive ({type(exc).__name__}: {exc})")]
    readable = [m for m in members if _why_member_skipped(m) is None]
    if not readable:
        held = ", ".join(members[:5]) + (", ..." if len(members) > 5 else "") if members else "nothing"
        why = f"the zip archive holds no market file ({', '.join(_MEMBER_SUFFIXES)}); it holds {held}"
        return [_Entry(*_identity(whole), unreadable=why)]
    return [_Entry(file, m, stat.st_mtime_ns, stat.st_size, skipped=_why_member_skipped(m)) for m in members]


def _identity(entry: _Entry) -> tuple[str, str | None, int, int]:
    return entry.file, entry.member, entry.mtime_ns, entry.size


@functools.lru_cache(maxsize=64)
def _zip_members(file: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    del mtime_ns, size  # part of the cache key only
    with zipfile.ZipFile(file) as archive:
        return tuple(info.filename for info in archive.infolist() if not info.is_dir())


def _why_member_skipped(member: str) -> str | None:
    base = member.replace("\\", "/").rsplit("/", 1)[-1]
    if member.startswith("__MACOSX/") or base.startswith("._"):
        return "macOS file metadata, not data"
    if not _is_market_name(base, _MEMBER_SUFFIXES):
        return f"not a market file: {Path(base).suffix or 'no extension'} (read are {', '.join(_MEMBER_SUFFIXES)})"
    return None


def _read_bytes(entry: _Entry) -> bytes:
    """The entry's content, decompressed when its first bytes say gzip, bzip2 or xz."""
    if entry.member is None:
        data = Path(entry.file).read_bytes()
    else:
        with zipfile.ZipFile(entry.file) as archive:
            data = archive.read(entry.member)
    for magic, decompress in _DECOMPRESSORS.items():
        if data.startswith(magic):
            return decompress(data)
    return data


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")  # Excel's "Unicode text" export
    return data.decode("utf-8-sig")


# --------------------------------------------------------------------------- loading and caching


def _load(paths: Sequence[str]) -> _Loaded:
    return _load_files(tuple(_resolve(paths)))


@functools.lru_cache(maxsize=8)
def _load_files(entries: tuple[_Entry, ...]) -> _Loaded:
    # Cached by (path, mtime, size) of every file: a backfill asks for many windows of one load.
    parsed: dict[str, _Parsed] = {}
    unreadable: dict[str, str] = {}
    for entry in entries:
        if entry.skipped:
            continue
        try:
            if entry.unreadable:
                raise ValueError(entry.unreadable)
            parsed[entry.key] = _parse_file(entry)
        except ValueError as exc:  # one bad file never aborts the others; its report says why
            unreadable[entry.key] = " ".join(str(exc).split())
        except Exception as exc:  # an importer bug on one file's quirk must not stop the others either
            unreadable[entry.key] = f"could not be imported ({type(exc).__name__}: {' '.join(str(exc).split())})"
    if not parsed:
        raise ValueError(
            "no readable market file: "
            + "; ".join(f"{e.name}: {e.skipped or unreadable[e.key]}" for e in entries if not e.skipped)
        )
    names = {e.key: e.name for e in entries}
    records = pd.concat([p.records for p in parsed.values()], ignore_index=True)
    records["_anchor"] = records["partition_hour"].fillna(records.groupby("_path")["partition_hour"].transform("min"))
    accepted = records["reason"].isna()
    good = records[accepted].copy()
    venues = _choose_venues(good, names)
    chosen = good["_venue"].isin(venues.index[venues["chosen"]])
    kept, losers = _deduplicate(good[chosen], ["coin_id", "partition_hour"])
    kept, unconverted = _to_usd(kept, venues)
    quarantine = pd.concat(
        [frame for frame in (records[~accepted], losers, unconverted) if len(frame)] or [records.iloc[:0]],
        ignore_index=True,
    )
    quarantine["_dup"] = quarantine["reason"].isin(_DUPLICATE_REASONS)
    quarantine["source"] = SOURCE
    kept = kept.assign(source=SOURCE).sort_values(["partition_hour", "coin_id"], kind="stable", ignore_index=True)
    unused = good.loc[~chosen, ["_path", "_anchor", "_merged"]]
    reports = _reports(
        entries,
        parsed,
        unreadable,
        kept,
        quarantine,
        unused,
        _venue_notes(good, venues),
        _conversion_notes(kept, venues),
    )
    return _Loaded(kept, quarantine, unused, reports)


@functools.lru_cache(maxsize=256)
def _parse_file(entry: _Entry) -> _Parsed:
    """All records of one file, interpreted, finer rows merged into hours, ``reason`` set on the rejected ones.

    Raises ``ValueError`` (the reason, without the file's name) when it is not a readable market file.
    """
    try:
        data = _read_bytes(entry)
        text = None if data.startswith(_PARQUET_MAGIC) else _decode(data)
    except _READ_ERRORS as exc:
        raise ValueError(f"cannot be read as text CSV or Parquet ({type(exc).__name__}: {exc})") from exc
    try:
        fields = _read_parquet(entry, data) if text is None else _read_csv(entry, text)
    except (csv.Error, pd.errors.ParserError) as exc:
        raise ValueError(f"cannot be read as CSV ({type(exc).__name__}: {exc})") from exc
    plain = _is_plain(fields.names)
    if plain:
        records, unused = _parse_plain(fields), {}
    else:
        records, unused = _parse_candles(fields)
    if len(records) and records["partition_hour"].isna().all():
        raise ValueError("no record has a readable timestamp; is this an hourly market file?")
    records["_path"] = entry.key
    records["_series"] = _series_key(entry)
    records["_derivative"] = records["_derivative"] | _is_derivative_name(entry.file_name)
    rows_read = len(records)
    interval = None if plain else _interval(records)
    if interval is not None and interval > HOUR:
        raise ValueError(
            f"its rows are {_span(interval)} apart (median spacing): coarser than hourly, so hourly candles "
            "cannot be made from them; replay hourly or finer files"
        )
    if interval is not None and interval < HOUR:
        records = _to_hourly(records, interval)
    if plain:
        label = "snapshots"
    elif interval is None:  # at most one time per coin: nothing to measure
        label = "1h (assumed)" if len(records) else None
    else:
        label = _span(interval)
    unknown = {
        n: "not a column this importer reads" for n in fields.names if n not in _KNOWN and not n.startswith("volume ")
    }
    return _Parsed(records, {**unknown, **unused}, label, rows_read)


def _reports(
    entries: Sequence[_Entry],
    parsed: dict[str, _Parsed],
    unreadable: dict[str, str],
    kept: pd.DataFrame,
    quarantine: pd.DataFrame,
    unused: pd.DataFrame,
    venue_notes: dict[str, dict[str, str]],
    conversion_notes: dict[str, dict[str, str]],
) -> list[FileReport]:
    """One report per entry, from per-file group counts (a folder may hold hundreds of files)."""
    by_file = kept.groupby("_path")
    kept_counts = pd.DataFrame(
        {
            "rows": by_file.size(),
            "first": by_file["partition_hour"].min(),
            "last": by_file["partition_hour"].max(),
            "no_volume": by_file["volume_quote"].agg(lambda v: int(v.isna().sum())),
            "date_off": by_file["_date_disagrees"].sum(),
            "incomplete": by_file["_incomplete"].sum(),
        }
    )
    hours = kept.sort_values(["_path", "coin_id", "partition_hour"])
    steps = hours.groupby(["_path", "coin_id"])["partition_hour"].diff() / HOUR
    gaps = (steps - 1).clip(lower=0).groupby(hours["_path"]).sum()
    duplicates = quarantine[quarantine["_dup"]].groupby("_path").size()
    reasons = quarantine[~quarantine["_dup"]].groupby(["_path", "reason"]).size()
    not_used = unused.groupby("_path").size()

    reports = []
    for entry in entries:
        key = entry.key
        base = {"path": entry.file, "member": entry.member}
        if entry.skipped:
            reports.append(FileReport(**base, **_NOTHING, skipped=entry.skipped))
        elif key not in parsed:
            reports.append(FileReport(**base, **_NOTHING, unreadable=unreadable[key]))
        else:
            mine = kept_counts.loc[key] if key in kept_counts.index else None
            reports.append(
                FileReport(
                    **base,
                    rows_read=parsed[key].rows_read,
                    rows_kept=int(mine["rows"]) if mine is not None else 0,
                    duplicates_removed=int(duplicates.get(key, 0)),
                    quarantined_by_reason={r: int(n) for (_, r), n in reasons[reasons.index.isin([key], 0)].items()},
                    first_hour=mine["first"].to_pydatetime() if mine is not None else None,
                    last_hour=mine["last"].to_pydatetime() if mine is not None else None,
                    gaps=int(gaps.get(key, 0)),
                    unused_columns=parsed[key].unused_columns,
                    rows_without_volume=int(mine["no_volume"]) if mine is not None else 0,
                    date_disagrees_with_unix=int(mine["date_off"]) if mine is not None else 0,
                    interval=parsed[key].interval,
                    rows_merged=parsed[key].rows_read - len(parsed[key].records),
                    incomplete_hours=int(mine["incomplete"]) if mine is not None else 0,
                    rows_not_used=int(not_used.get(key, 0)),
                    venue_choice=venue_notes.get(key, {}),
                    conversions=conversion_notes.get(key, {}),
                )
            )
    return reports


_NOTHING = {
    "rows_read": 0,
    "rows_kept": 0,
    "duplicates_removed": 0,
    "quarantined_by_reason": {},
    "first_hour": None,
    "last_hour": None,
    "gaps": 0,
}


def _snapshots_out(snaps: pd.DataFrame, now: datetime) -> pd.DataFrame:
    return conform(snaps.assign(ingested_at=now), SNAPSHOT_COLUMNS)


def _quarantine_out(quar: pd.DataFrame, now: datetime) -> pd.DataFrame:
    return conform(quar.assign(ingested_at=now), QUARANTINE_COLUMNS)


# --------------------------------------------------------------------------- reading text


def _canonical(name: str) -> str:
    key = re.sub(r"[\s_]+", " ", name.strip().lower())
    if key.startswith("volume ") and key != "volume quote":
        return "volume " + key.removeprefix("volume ").upper()  # "volume BTC": the unit's ticker
    return _ALIASES.get(key, key.replace(" ", "_"))


def _is_header(names: list[str]) -> bool:
    return sum(n in _KNOWN or n.startswith("volume ") for n in names) >= 3


def _is_plain(names: list[str]) -> bool:
    return "observed_at" in names or "price" in names


def _check_columns(names: list[str]) -> None:
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"duplicate column(s): {', '.join(duplicated)}")
    plain = _is_plain(names)
    missing = [c for c in (_PLAIN_REQUIRED if plain else _CANDLE_REQUIRED) if c not in names]
    if not plain and "unix" not in names and "date" not in names:
        missing.append("unix or date")
    if missing:
        kind = "plain snapshot" if plain else "OHLCV candle"
        raise ValueError(f"{kind} file is missing required column(s): {', '.join(missing)}")


def _read_csv(entry: _Entry, content: str) -> _Fields:
    lines = content.splitlines()
    if not any(line.strip() for line in lines):
        raise ValueError("the file is empty")
    # The header is the first line, or the second after a URL / "Created on ..." line.
    header_at = next(
        (i for i, line in enumerate(lines[:2]) if _is_header([_canonical(n) for n in next(csv.reader([line]), [])])),
        None,
    )
    if header_at is None:
        raise ValueError(
            "no recognisable header in the first two lines (expected e.g. "
            "'unix,date,symbol,open,high,low,close,...' or 'coin_id,symbol,observed_at,price')"
        )
    names = [_canonical(n) for n in next(csv.reader([lines[header_at]]))]
    _check_columns(names)
    # Text stays in object columns: Python strings are cheaper to filter and parse than Arrow ones here.
    body = pd.Series(lines[header_at + 1 :], index=range(header_at + 2, len(lines) + 1), dtype=object)
    raw = body[body.str.strip() != ""]
    # Field counts from commas; only lines with quotes need a real CSV parse to count.
    n_fields = raw.str.count(",") + 1
    quoted = raw.str.contains('"', regex=False)
    if quoted.any():
        n_fields[quoted] = [len(next(csv.reader([line]))) for line in raw[quoted]]
    width = max(len(names), int(n_fields.max()) if len(raw) else 0)
    text = pd.read_csv(
        io.StringIO("\n".join(raw)), header=None, names=range(width), dtype=object, keep_default_na=False
    )
    if len(text) != len(raw):
        raise ValueError("unbalanced quotes, records span lines")
    text = text.iloc[:, : len(names)].set_axis(names, axis=1)
    text = text.assign(_raw=raw.to_numpy(), _line=raw.index.to_numpy(), _nfields=n_fields.to_numpy())
    return _Fields(entry, names, text)


def _read_parquet(entry: _Entry, data: bytes) -> _Fields:
    frame = pd.read_parquet(io.BytesIO(data))
    names = [_canonical(str(c)) for c in frame.columns]
    if not _is_header(names):
        raise ValueError("no recognisable columns (expected e.g. coin_id, symbol, observed_at, price)")
    _check_columns(names)
    text = pd.DataFrame({n: frame[c].astype("str").astype(object) for n, c in zip(names, frame.columns, strict=True)})
    raw = text[names[0]].str.cat([text[n] for n in names[1:]], sep=",", na_rep="") if len(frame) else ""
    text = text.assign(_raw=raw, _line=np.arange(1, len(frame) + 1), _nfields=len(names))
    return _Fields(entry, names, text)


# --------------------------------------------------------------------------- interpreting


def _numbers(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(values, garbled): NaN where blank (empty, NULL, nan...) or garbled (present, not a finite number)."""
    values = pd.to_numeric(text, errors="coerce")
    unread = values.isna() | ~np.isfinite(values)
    garbled = ~_blank(text[unread]).reindex(text.index, fill_value=True)
    return values.where(~unread), garbled


def _blank(text: pd.Series) -> pd.Series:
    return text.fillna("").str.strip().str.lower().isin(_NULLS)


def _unix_times(values: pd.Series) -> pd.Series:
    """Unix seconds, milliseconds or microseconds (by magnitude) as naive UTC datetimes."""
    scale = np.select([values < 1e11, values < 1e14, values < 1e17], [1e6, 1e3, 1.0], np.nan)
    micros = (values * scale).round()
    ok = (values > 0) & micros.notna()
    stamps = np.where(ok, micros, 0).astype("int64").astype("datetime64[us]")
    return _in_era(pd.Series(stamps, index=values.index).where(ok))


def _iso_times(text: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    return _in_era(parsed.dt.tz_localize(None).astype("datetime64[us]"))


def _in_era(stamps: pd.Series) -> pd.Series:
    """NaT outside ``ERA``: a '1' in a unix column is garbage, not 1970-01-01 00:00:01."""
    return stamps.where((stamps >= ERA[0]) & (stamps < ERA[1]))


def _date_times(text: pd.Series) -> pd.Series:
    """``2021-06-09 23:00:00`` (any ISO-8601) or ``2017-08-17 06-AM`` as naive UTC datetimes."""
    twelve_hour = text.str.upper().str.endswith("M").fillna(False)
    out = _iso_times(text.where(~twelve_hour))
    out[twelve_hour] = _in_era(pd.to_datetime(text[twelve_hour], format="%Y-%m-%d %I-%p", errors="coerce"))
    return out


def _new_records(fields: _Fields) -> pd.DataFrame:
    text = fields.text
    records = pd.DataFrame(
        {
            "source_ref": fields.entry.name + ":" + text["_line"].astype(str).astype(object),
            "raw_record": text["_raw"],
            "_line": text["_line"],
            "reason": pd.Series(None, index=text.index, dtype="object"),
            "detail": pd.Series(None, index=text.index, dtype="object"),
            "has_tradecount": False,
            "_date_disagrees": False,
            "_quote": "USD",
            "_derivative": False,
            "_merged": 0,  # finer rows folded into this row's hourly candle
            "_incomplete": False,
            "_converted": False,
        },
        index=text.index,
    )

    def field_count(r: pd.Series) -> str:
        return f"{text.at[r.name, '_nfields']} fields where the header has {len(fields.names)}"

    _reject(records, text["_nfields"] < len(fields.names), "missing_column", field_count)
    _reject(records, text["_nfields"] > len(fields.names), "extra_column", field_count)
    return records


def _reject(records: pd.DataFrame, mask: pd.Series, reason: str, detail: Callable[[pd.Series], str]) -> None:
    """Set ``reason`` on rows matching ``mask`` not already rejected; details only for those rows."""
    hit = mask.fillna(False).astype(bool) & records["reason"].isna()
    if hit.any():
        records.loc[hit, "reason"] = reason
        records.loc[hit, "detail"] = [detail(row) for _, row in records[hit].iterrows()]


def _parse_candles(fields: _Fields) -> tuple[pd.DataFrame, dict[str, str]]:
    """(records, unused columns) of an OHLCV candle file."""
    text, names = fields.text, fields.names
    records = _new_records(fields)

    if "symbol" in names:
        symbol = text["symbol"].fillna("").str.strip().str.upper()
    elif named := _pair_in_name(_stem(fields.entry.file_name)):
        symbol = pd.Series(named, index=text.index, dtype=object)
    else:
        raise ValueError(
            "no symbol column, and the file name does not name the pair "
            "(expected <Exchange>_<PAIR>_1h.csv, e.g. Bitstamp_BTCUSD_1h.csv)"
        )
    pairs = _split_pairs(symbol)
    records["symbol"], records["coin_id"] = pairs["base"], pairs["coin_id"]
    records["_quote"], records["_derivative"] = pairs["quote"], pairs["derivative"]
    _reject(records, symbol == "", "missing_field", lambda r: "symbol is empty")

    times = pd.DataFrame(index=text.index)
    if "unix" in names:
        times["unix"] = _unix_times(_numbers(text["unix"])[0])
    if "date" in names:
        times["date"] = _date_times(text["date"])
    stamp = times.iloc[:, 0]  # unix when it reads; the date only matters for quarantine
    if len(times.columns) == 2:
        stamp = stamp.fillna(times["date"])
    hours = pd.DataFrame({n: t.dt.floor("h") for n, t in times.items()})
    records["observed_at"] = stamp
    records["partition_hour"] = stamp.dt.floor("h")

    def disagreement(r: pd.Series) -> str:
        return " but ".join(f"{n} {text.at[r.name, n]!r} is {times.at[r.name, n]:%Y-%m-%d %H:%M}" for n in times) + (
            "; not a time-zone offset, so neither can be trusted"
        )

    _reject(
        records,
        times.isna().any(axis=1),
        "unparseable_timestamp",
        lambda r: "cannot read the time from " + ", ".join(f"{n}={text.at[r.name, n]!r}" for n in times),
    )
    if len(times.columns) == 2:
        # Unix wins; a date off by a time-zone offset is a mislabelled date (see the module docstring).
        offset = times["date"] - times["unix"]
        zone_like = (offset.abs() <= MAX_DATE_OFFSET) & (offset % pd.Timedelta(minutes=15) == pd.Timedelta(0))
        differs = hours["date"] != hours["unix"]
        _reject(records, differs & ~zone_like, "timestamp_mismatch", disagreement)
        records["_date_disagrees"] = differs & zone_like
    _reject(
        records,
        pairs["base"].isna(),
        "unknown_pair",
        lambda r: (
            f"cannot tell base and quote in the pair {symbol.at[r.name]!r} (expected BASE/QUOTE, BASE-QUOTE or "
            f"BASEQUOTE ending in a known quote: {', '.join(sorted(USD_QUOTES | OTHER_QUOTES))})"
        ),
    )

    prices = {"open": "open", "high": "high", "low": "low", "close": "price"}  # file column -> record column
    volume_columns = [n for n in names if n == "volume" or n.startswith("volume ")]
    parsed = {c: _numbers(text[c]) for c in [*prices, *volume_columns]}
    for column, target in prices.items():
        records[target] = parsed[column][0]
    volumes = {c: parsed[c][0] for c in volume_columns}
    records["volume_quote"], understood = _quote_volume(pairs, records["price"], volumes)
    records["market_cap"] = np.nan
    if "tradecount" in names:
        records["has_tradecount"] = _numbers(text["tradecount"])[0].notna()
    _check_values(records, text, {c: g for c, (_, g) in parsed.items()}, prices)
    if records.empty:
        return records, {}  # no pair to judge the volume columns by
    listed = (
        ", ".join(sorted({f"{b}/{q}" for b, q in zip(pairs["raw_base"], pairs["raw_quote"], strict=True) if b}))
        or "no pair"
    )
    unused = {
        c: f"a volume in a currency that is neither base nor quote of {listed}"
        for c in volume_columns
        if c not in understood
    }
    return records, unused


def _split_symbol(symbol: str) -> tuple[str, str, bool] | None:
    """(base, quote, derivative) of one symbol as written (``BTC/USDT``, ``ETCBTC``, ``BTC-PERP``), or None."""
    derivative = False
    for pattern in _DERIVATIVE_SYMBOLS:
        if marked := pattern.fullmatch(symbol):
            symbol, derivative = marked.group(1), True
            break
    if pair := _SEPARATED_PAIR.fullmatch(symbol) or _GLUED_PAIR.fullmatch(symbol):
        return pair.group(1), pair.group(2), derivative
    if derivative and re.fullmatch(r"[A-Z0-9]+", symbol):
        return symbol, "USD", True  # BTC-PERP (FTX), BTC-PERPETUAL (Deribit): priced in USD
    return None


def _split_pairs(symbol: pd.Series) -> pd.DataFrame:
    """Per row of ``symbol``: raw_base, raw_quote (as written), base, quote (XBT read as BTC), derivative,
    coin_id; NaN where the symbol reads as no pair. Worked out once per distinct symbol."""
    table = {}
    for text in symbol.unique():
        split = _split_symbol(text)
        if split is None:
            table[text] = (None, None, None, None, False, None)
            continue
        raw_base, raw_quote, derivative = split
        base, quote = _SYMBOL_ALIASES.get(raw_base, raw_base), _SYMBOL_ALIASES.get(raw_quote, raw_quote)
        table[text] = (raw_base, raw_quote, base, quote, derivative, coin_id_for_symbol(base))
    columns = ["raw_base", "raw_quote", "base", "quote", "derivative", "coin_id"]
    frame = pd.DataFrame.from_dict(table, orient="index", columns=columns).astype({"derivative": bool})
    return frame.reindex(symbol.to_numpy()).set_axis(symbol.index)


def _pair_in_name(stem: str) -> str | None:
    """The pair a file name gives: ``Bitstamp_BTCUSD_1h`` -> BTCUSD (the exchange's word is tried last)."""
    words = stem.upper().split("_")
    return next((w for w in [*words[1:], words[0]] if _split_symbol(w)), None)


def _stem(name: str) -> str:
    """A file name without its market suffixes: ``Binance_BTCUSDT_1h.csv.gz`` -> ``Binance_BTCUSDT_1h``."""
    lower = name.lower()
    suffix = next((s for s in sorted(MARKET_SUFFIXES, key=len, reverse=True) if lower.endswith(s)), None)
    return name[: -len(suffix)] if suffix else Path(name).stem


def _name_words(name: str) -> list[str]:
    return [w for w in re.split(r"[_\-\s.]+", _stem(name).lower()) if w]


def _is_derivative_name(name: str) -> bool:
    return any(w in _DERIVATIVE_WORDS or w.endswith("usdtm") for w in _name_words(name))


def _series_key(entry: _Entry) -> str:
    """The venue a file belongs to, but for its pair: its folder (or archive) and its name's telling words."""
    if entry.member is None:
        folder = str(Path(entry.file).parent)
    else:
        folder = entry.file + "!" + entry.member.replace("\\", "/").rpartition("/")[0]
    return folder + "/" + "_".join(w for w in _name_words(entry.file_name) if not _SERIES_NOISE.fullmatch(w))


def _quote_volume(pairs: pd.DataFrame, close: pd.Series, volumes: dict[str, pd.Series]) -> tuple[pd.Series, set[str]]:
    """(volume in quote units, columns understood): ``Volume <QUOTE>`` (any USD-like one for a USD quote), else
    base volume * close. Understood columns name the base or the quote of some pair in the file."""
    out = pd.Series(np.nan, index=close.index)
    understood: set[str] = set()
    for (b, q), index in pairs[["raw_base", "raw_quote"]].dropna().groupby(["raw_base", "raw_quote"]).groups.items():
        b_alias, q_alias = _SYMBOL_ALIASES.get(b, b), _SYMBOL_ALIASES.get(q, q)
        usd_like = [f"volume {u}" for u in sorted(USD_QUOTES)] if q in USD_QUOTES else []
        quote_cols = list(dict.fromkeys([f"volume {q}", f"volume {q_alias}", *usd_like]))
        base_cols = list(dict.fromkeys([f"volume {b}", f"volume {b_alias}", "volume"]))
        understood.update(c for c in (*quote_cols, *base_cols) if c in volumes)
        if col := next((c for c in quote_cols if c in volumes), None):
            out[index] = volumes[col][index]
        elif col := next((c for c in base_cols if c in volumes), None):
            out[index] = volumes[col][index] * close[index]
    return out, understood


def _parse_plain(fields: _Fields) -> pd.DataFrame:
    text, names = fields.text, fields.names
    records = _new_records(fields)
    records["coin_id"] = text["coin_id"].fillna("").str.strip()
    records["symbol"] = text["symbol"].fillna("").str.strip().str.upper()
    for column in ("coin_id", "symbol"):
        _reject(records, records[column] == "", "missing_field", lambda r, c=column: f"{c} is empty")

    numeric_time, _ = _numbers(text["observed_at"])
    stamp = _unix_times(numeric_time).fillna(_iso_times(text["observed_at"].where(numeric_time.isna())))
    records["observed_at"] = stamp
    records["partition_hour"] = stamp.dt.floor("h")
    _reject(
        records,
        stamp.isna(),
        "unparseable_timestamp",
        lambda r: f"cannot read observed_at={text.at[r.name, 'observed_at']!r} as ISO-8601 or unix seconds",
    )

    numeric = [c for c in (*_PRICES, "volume_quote", "market_cap") if c in names]
    parsed = {c: _numbers(text[c]) for c in numeric}
    for column in (*_PRICES, "volume_quote", "market_cap"):
        records[column] = parsed[column][0] if column in parsed else np.nan
    _check_values(
        records,
        text,
        {c: g for c, (_, g) in parsed.items()},
        {c: c for c in _PRICES if c in names},
        required=("price",),
    )
    return records


def _check_values(
    records: pd.DataFrame,
    text: pd.DataFrame,
    garbled: dict[str, pd.Series],
    prices: dict[str, str],
    required: Sequence[str] = ("open", "high", "low", "price"),
) -> None:
    """Price and volume checks shared by both formats; ``prices`` maps file column -> record column."""

    def listing(r: pd.Series, columns: Sequence[str]) -> str:
        return ", ".join(f"{c}={text.at[r.name, c]!r}" for c in columns)

    missing_cols = [c for c, rc in prices.items() if rc in required]
    missing = pd.DataFrame({prices[c]: records[prices[c]].isna() & ~garbled[c] for c in missing_cols})
    _reject(
        records,
        missing.any(axis=1),
        "missing_price",
        lambda r: "empty or NULL: " + listing(r, [c for c in missing_cols if missing.at[r.name, prices[c]]]),
    )
    bad = pd.DataFrame(garbled)
    _reject(
        records,
        bad.any(axis=1),
        "non_numeric",
        lambda r: "not a number: " + listing(r, [c for c in bad.columns if bad.at[r.name, c]]),
    )
    price_frame = records[list(prices.values())]
    _reject(
        records,
        (price_frame <= 0).any(axis=1),
        "non_positive_price",
        lambda r: "prices must be > 0: " + listing(r, [c for c in prices if records.at[r.name, prices[c]] <= 0]),
    )
    _reject(
        records,
        records["volume_quote"] < 0,
        "negative_volume",
        lambda r: f"quote volume {r['volume_quote']} is negative",
    )

    o, h, lo, c = (records[k] for k in _PRICES)
    disordered = (lo > np.fmin(o, c)) | (h < np.fmax(o, c)) | (h < lo)
    body = np.fmax(o, c) / np.fmin(o, c)
    _reject(
        records,
        disordered | (body > MAX_BODY_RATIO) | (h / lo > MAX_RANGE_RATIO),
        "bad_tick",
        lambda r: (
            f"open={r['open']} high={r['high']} low={r['low']} close={r['price']}: "
            f"needs low <= open, close <= high, open/close within x{MAX_BODY_RATIO:g}, "
            f"high/low within x{MAX_RANGE_RATIO:g}"
        ),
    )


# --------------------------------------------------------------------------- intervals


def _interval(records: pd.DataFrame) -> pd.Timedelta | None:
    """Median spacing of a candle file's distinct times per coin, or None with one time per coin."""
    readable = records["observed_at"].notna() & records["coin_id"].notna()
    times = records.loc[readable, ["coin_id", "observed_at"]].drop_duplicates()
    steps = times.sort_values(["coin_id", "observed_at"]).groupby("coin_id")["observed_at"].diff().dropna()
    if steps.empty:
        return None
    return max(steps.median().round("s"), pd.Timedelta(seconds=1))


def _span(interval: pd.Timedelta) -> str:
    seconds = int(interval.total_seconds())
    unit, size = next((u, s) for u, s in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)) if seconds % s == 0)
    return f"{seconds // size}{unit}"


def _to_hourly(records: pd.DataFrame, interval: pd.Timedelta) -> pd.DataFrame:
    """Accepted rows finer than an hour merged into hourly candles (see the module docstring)."""
    accepted = records["reason"].isna()
    rows, losers = _deduplicate(records[accepted], ["coin_id", "observed_at"])
    key = ["coin_id", "partition_hour"]
    rows = rows.sort_values([*key, "observed_at"], kind="stable").assign(_no_volume=lambda f: f["volume_quote"].isna())
    by_hour = rows.groupby(key, sort=False)
    merged = by_hour.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        price=("price", "last"),
        volume_quote=("volume_quote", "sum"),
        no_volume=("_no_volume", "max"),
        rows=("observed_at", "size"),
        has_tradecount=("has_tradecount", "min"),
        date_disagrees=("_date_disagrees", "max"),
    )
    candles = rows.drop_duplicates(key).set_index(key)  # the hour's first row names the candle
    for column in ("open", "high", "low", "price", "has_tradecount"):
        candles[column] = merged[column]
    candles["volume_quote"] = merged["volume_quote"].where(~merged["no_volume"].astype(bool))
    candles["_date_disagrees"] = merged["date_disagrees"].astype(bool)
    candles["_merged"] = merged["rows"] - 1
    candles["_incomplete"] = merged["rows"] < HOUR // interval
    candles = candles.reset_index().drop(columns="_no_volume")
    candles["observed_at"] = candles["partition_hour"]  # the hourly candle opens on the hour
    parts = [frame for frame in (records[~accepted], losers, candles) if len(frame)]
    return pd.concat(parts, ignore_index=True) if parts else records.iloc[:0]


# --------------------------------------------------------------------------- venues and quotes


def _choose_venues(good: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """Venues by id, one ``chosen`` per coin by the rule in the module docstring; sets ``good["_venue"]``."""
    good["_venue"] = good.groupby(["coin_id", "_series", "_quote", "_derivative"], sort=True).ngroup()
    by_venue = good.groupby("_venue")
    venues = by_venue.agg(
        coin_id=("coin_id", "first"),
        base=("symbol", "first"),
        quote=("_quote", "first"),
        derivative=("_derivative", "first"),
        hours=("partition_hour", "nunique"),
    )
    files = by_venue["_path"].unique()
    venues["files"] = [" + ".join(sorted(names[p] for p in paths)) for paths in files]
    venues["first_file"] = [min((names[p], p) for p in paths) for paths in files]
    venues["converted"] = ~venues["quote"].isin(USD_QUOTES)
    rank = ["coin_id", "converted", "derivative", "fewer_hours", "first_file"]

    def first_per_coin(table: pd.DataFrame) -> pd.Index:
        ordered = table.assign(fewer_hours=-table["hours"]).sort_values(rank, kind="stable")
        return ordered.index[~ordered["coin_id"].duplicated()]

    usd_series = first_per_coin(venues[~venues["converted"]])
    # A converted venue counts the hours it can convert: those its quote's USD series has too.
    foreign = venues.index[venues["converted"] & ~venues["coin_id"].isin(venues.loc[usd_series, "coin_id"])]
    if len(foreign):
        rates = good[good["_venue"].isin(usd_series)][["coin_id", "partition_hour"]].drop_duplicates()
        hours = good[good["_venue"].isin(foreign)][["_venue", "_quote", "partition_hour"]].drop_duplicates()
        hours["coin_id"] = hours["_quote"].map(coin_id_for_symbol)
        convertible = hours.merge(rates, on=["coin_id", "partition_hour"]).groupby("_venue").size()
        venues.loc[foreign, "hours"] = convertible.reindex(foreign, fill_value=0).to_numpy()
    venues["chosen"] = venues.index.isin(first_per_coin(venues))
    winner = venues[venues["chosen"]].set_index("coin_id")
    venues["usd_series"] = venues.index.isin(usd_series)
    venues["winner_files"] = venues["coin_id"].map(winner["files"])
    venues["why"] = [_why_not(v, winner.loc[v.coin_id]) if not v.chosen else "" for v in venues.itertuples()]
    return venues


def _why_not(loser, winner: pd.Series) -> str:
    """Why ``loser`` is not the venue used for its coin: the first rule that tells it from ``winner``."""
    if loser.converted != winner["converted"]:
        return f"a price read in USD before one converted from {loser.quote}"
    if loser.derivative != winner["derivative"]:
        return "spot before futures/perpetual"
    if loser.hours != winner["hours"]:
        return f"more readable hours: {winner['hours']:,} against {loser.hours:,}"
    return f"as many readable hours ({loser.hours:,}); the first file name wins"


def _venue_notes(good: pd.DataFrame, venues: pd.DataFrame) -> dict[str, dict[str, str]]:
    """path -> coin_id -> which venue was used and why, for the coins offered by more than one venue."""
    contested = venues[venues.groupby("coin_id")["chosen"].transform("size") > 1]
    notes: dict[str, dict[str, str]] = {}
    rows = good[good["_venue"].isin(contested.index)].groupby(["_path", "_venue"]).size()
    for (path, venue), n in rows.items():
        v = contested.loc[venue]
        if v["chosen"]:
            others = contested[(contested["coin_id"] == v["coin_id"]) & ~contested["chosen"]]
            over = "; ".join(f"{o.files} ({o.why})" for o in others.itertuples())
            note = f"{v['coin_id']}: series used ({v['base']}/{v['quote']}), chosen over {over}"
        else:
            note = (
                f"{v['coin_id']}: {n:,} {v['base']}/{v['quote']} rows not used: the series is taken from "
                f"{v['winner_files']} ({v['why']})"
            )
        mine = notes.setdefault(path, {})
        mine[v["coin_id"]] = f"{mine[v['coin_id']]}; {note}" if v["coin_id"] in mine else note  # a file with two pairs
    return notes


def _to_usd(kept: pd.DataFrame, venues: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept rows in USD, rows left without a USD rate) by the Quotes rule in the module docstring."""
    foreign = ~kept["_quote"].isin(USD_QUOTES)
    if not foreign.any():
        return kept, kept.iloc[:0]
    usd = kept[kept["_venue"].isin(venues.index[venues["usd_series"]])]
    closes = usd.set_index(["coin_id", "partition_hour"])["price"]
    rows = kept[foreign].copy()
    quote_coin = rows["_quote"].map(coin_id_for_symbol)
    rate = closes.reindex(pd.MultiIndex.from_arrays([quote_coin, rows["partition_hour"]])).to_numpy()
    for column in ("open", "high", "low", "price", "volume_quote"):
        rows[column] = rows[column] * rate
    rows["_converted"] = True
    unrated = rows[np.isnan(rate)].copy()
    source = venues[venues["usd_series"]].set_index("coin_id")["files"]
    has_series = quote_coin[unrated.index].isin(source.index)
    unrated["reason"] = np.where(has_series, "no_quote_usd_rate", "non_usd_quote")
    unrated["detail"] = [
        f"{base}/{quote}: no {quote} close in USD at {hour:%Y-%m-%d %H:%M} in {source[coin]} to convert this hour"
        if series
        else f"{base}/{quote} is quoted in {quote}, and no replayed file holds {quote} priced in USD "
        f"(e.g. a {quote}/USDT file) to convert it; prices are stored in USD"
        for base, quote, hour, coin, series in zip(
            unrated["symbol"],
            unrated["_quote"],
            unrated["partition_hour"],
            quote_coin[unrated.index],
            has_series,
            strict=True,
        )
    ]
    return pd.concat([kept[~foreign], rows[~np.isnan(rate)]]), unrated


def _conversion_notes(kept: pd.DataFrame, venues: pd.DataFrame) -> dict[str, dict[str, str]]:
    """path -> pair -> how its kept rows were converted to USD, and with which file's rates."""
    rate_files = venues[venues["usd_series"]].set_index("coin_id")["files"]
    notes: dict[str, dict[str, str]] = {}
    for (path, base, quote), n in kept[kept["_converted"]].groupby(["_path", "symbol", "_quote"]).size().items():
        notes.setdefault(path, {})[f"{base}/{quote}"] = (
            f"converted to USD: {n:,} hours, open, high, low, close and volume each times the same hour's "
            f"{quote} close in USD from {rate_files[coin_id_for_symbol(quote)]}"
        )
    return notes


# --------------------------------------------------------------------------- de-duplication


def _deduplicate(good: pd.DataFrame, key: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, losers): one row per ``key`` by the rule in the module docstring; losers carry reason and detail."""
    contested = good.duplicated(key, keep=False)
    rivals = good[contested]  # only keys with several rows need ranking
    by = dict.fromkeys(key, True)
    by.setdefault("observed_at", False)  # the latest observation first
    top_volume = rivals.groupby(list(by))["volume_quote"].transform("max") - VOLUME_TIE_USD
    by |= {"_top_volume": False, "has_tradecount": False, "raw_record": True, "_path": True, "_line": True}
    ranked = rivals.assign(_top_volume=rivals["volume_quote"] >= top_volume).sort_values(
        list(by), ascending=list(by.values()), kind="stable"
    )
    first = ~ranked.duplicated(key)
    losers = ranked.loc[~first].drop(columns="_top_volume")
    won = ranked.loc[first].set_index(key).reindex(pd.MultiIndex.from_frame(losers[key]))
    same = pd.DataFrame(
        {
            c: (losers[c].to_numpy() == won[c].to_numpy()) | (losers[c].isna().to_numpy() & won[c].isna().to_numpy())
            for c in ["observed_at", *_PRICES, "volume_quote", "market_cap"]
            if c not in key
        },
        index=losers.index,
    ).all(axis=1)
    losers["reason"] = np.where(same, "exact_duplicate", "duplicate_hour")
    losers["detail"] = [
        f"another row for {coin} at {at:%Y-%m-%d %H:%M} was kept: {ref} (close {kc}, quote volume {kv}); "
        f"this row has close {lc}, quote volume {lv}"
        for coin, at, ref, kc, kv, lc, lv in zip(
            losers["coin_id"],
            losers[key[1]],
            won["source_ref"],
            won["price"],
            won["volume_quote"],
            losers["price"],
            losers["volume_quote"],
            strict=True,
        )
    ]
    kept = pd.concat([good[~contested], ranked.loc[first].drop(columns="_top_volume")])
    return kept, losers


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m crypto_assets.market.csv_replay",
        description="Import report for market CSV / Parquet files, compressed or zipped.",
    )
    parser.add_argument("paths", nargs="+", help=f"files or folders ({', '.join(MARKET_SUFFIXES)})")
    args = parser.parse_args(argv)
    try:
        _, _, reports = load_market_files(args.paths)
    except (ValueError, OSError) as exc:  # bad input is one line, not a traceback
        parser.exit(1, f"{parser.prog}: error: {' '.join(str(exc).split())}\n")
    print(format_reports(reports))


if __name__ == "__main__":
    main()
