"""The ``csv`` market source: replays hourly candles from files, quarantining every bad record.

Input formats (column names are matched case-insensitively, spaces and underscores alike):

1. CryptoDataDownload-style hourly OHLCV CSV, e.g. ``Binance_BTCUSDT_1h.csv``:

   - an optional extra line before the header (a URL, or ``Created on <date>,<url>``);
   - header ``unix,date,symbol,open,high,low,close,Volume <BASE>,Volume <QUOTE>[,tradecount]`` or
     ``Unix Timestamp,Date,Symbol,Open,High,Low,Close,Volume``. Required: open, high, low, close,
     at least one of unix / date, and the pair: a ``symbol`` column or, without one, a file name
     ``<Exchange>_<PAIR>_1h.csv`` (``Bitstamp_BTCUSD_1h.csv``);
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
   - ``symbol`` a pair ``BASE/QUOTE`` (or ``BASE-QUOTE``, or ``BASEQUOTE`` with a USD-like suffix);
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
   means UTC) or unix seconds.

A file that cannot be read as a market file at all (no recognisable header, a required column
missing, no pair anywhere, no readable time in any record) is reported as unreadable with the
reason, and the other files are imported; only when no file is readable does loading raise
``ValueError``. Columns a file has but the importer cannot use are listed in its report.

Rejected records go to quarantine with one reason, checked in this order: ``missing_column`` /
``extra_column`` (field count differs from the header), ``missing_field`` (symbol or coin_id
empty), ``unparseable_timestamp``, ``timestamp_mismatch`` (unix and date name different hours),
``non_usd_quote`` (only ``schema.USD_QUOTES`` are accepted: rows are stored as USD prices),
``missing_price``, ``non_numeric``, ``non_positive_price``, ``negative_volume``, ``bad_tick``.
``source_ref`` is ``<file name>:<line number>`` (for Parquet, the 1-based row number) and
``raw_record`` the line as read (for Parquet, the row's values joined by commas).

Bad tick: OHLC out of order (low above min(open, close) or high below max(open, close)), or open
and close more than a factor ``MAX_BODY_RATIO`` (2) apart, or high more than ``MAX_RANGE_RATIO``
(4) times low. The oldest BTC row (open = high = 16199.91, close 4308.83: 3.8x) and ETH row
(open 652.74, close 300.79: 2.2x) are wrong opens, while the largest real hourly body in the four
shared files is 1.18x. Wicks are allowed further than bodies because thin books really print
them: ETH 2017-08-22 04:00 (open 280, low 144.21, close 287; range 2.14x) is kept for the anomaly
detectors to see.

De-duplication: one row per (coin_id, partition_hour) across all files (the importer is for
hourly candles; finer rows of one hour would be de-duplicated down to one). The real duplicates
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
``rows_read`` and ends in exactly one place, so ``rows_read == rows_kept + duplicates_removed +
quarantined``. De-duplicated rows are in the quarantine frame too, but counted as
``duplicates_removed``, not in ``quarantined`` / ``quarantined_by_reason``.

Windows: a record belongs to the window holding its ``partition_hour``. A record whose time is
unreadable (``partition_hour`` NULL) belongs to the window holding the earliest readable hour of
its file, so each is recorded exactly once. Every window's batch carries the unreadable files
and the unused columns as ``warnings``, so each ingestion run says them.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import re
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
_PAIR_IN_FILE_NAME = re.compile(
    r"[A-Za-z0-9]+_([A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)_1h", re.IGNORECASE
)  # Bitstamp_BTCUSD_1h
MAX_DATE_OFFSET = pd.Timedelta(hours=14)  # the widest time-zone offset (UTC+14)
_PRICES = ("open", "high", "low", "price")  # `price` is the candle close
_GLUED_PAIR = re.compile(rf"^([A-Z0-9]+?)({'|'.join(sorted(USD_QUOTES, key=len, reverse=True))})$")


@dataclass(frozen=True)
class FileReport:
    """Import figures for one file (``rows_read == rows_kept + duplicates_removed + quarantined``)."""

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

    @property
    def quarantined(self) -> int:
        return sum(self.quarantined_by_reason.values())

    def warnings(self) -> list[str]:
        """What this file's import could not use, in words (empty when nothing)."""
        name = Path(self.path).name
        if self.unreadable:
            return [f"{name}: unreadable, not imported: {self.unreadable}"]
        out = [f"{name}: column {c!r} not used ({why})" for c, why in self.unused_columns.items()]
        if self.rows_without_volume:
            out.append(f"{name}: {self.rows_without_volume:,} kept rows have no usable volume")
        if self.date_disagrees_with_unix:
            out.append(
                f"{name}: {self.date_disagrees_with_unix:,} rows have a date off unix by a time-zone offset; unix was used"
            )
        return out


@dataclass(frozen=True)
class _Parsed:
    """One file's interpreted records, and the columns it has but that could not be used."""

    records: pd.DataFrame
    unused_columns: dict[str, str]


@dataclass(frozen=True)
class _Loaded:
    snapshots: pd.DataFrame  # snapshot columns + _path
    quarantine: pd.DataFrame  # quarantine columns + _path, _anchor (window-assignment hour), _dup
    reports: list[FileReport]


@dataclass(frozen=True)
class _Fields:
    """A file's records as text, keyed by canonical column name, before any interpretation."""

    path: Path
    names: list[str]
    text: pd.DataFrame  # one text column per header name, plus _raw, _line, _nfields


# --------------------------------------------------------------------------- public API


def load_market_files(paths: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[FileReport]]:
    """Clean snapshots and quarantine for all time, plus a report per file.

    ``paths`` are files or directories (a directory means every ``*.csv`` / ``*.parquet`` in it,
    sorted). Raises ``ValueError`` for a missing path, an empty directory or a broken file.
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
    snaps, quar = loaded.snapshots, loaded.quarantine
    snaps = snaps[(snaps["partition_hour"] >= window_start) & (snaps["partition_hour"] < window_end)]
    quar = quar[(quar["_anchor"] >= window_start) & (quar["_anchor"] < window_end)]
    duplicates = int(quar["_dup"].sum())
    now = utc_naive(datetime.now(UTC))
    files = set(snaps["_path"]) | set(quar["_path"])
    return SourceBatch(
        snapshots=_snapshots_out(snaps, now),
        quarantine=_quarantine_out(quar, now),
        stats={
            "rows_read": len(snaps) + len(quar),
            "rows_kept": len(snaps),
            "duplicates_removed": duplicates,
            "quarantined": len(quar) - duplicates,
            "files": len(files),
            "files_unreadable": sum(1 for r in loaded.reports if r.unreadable),
            "rows_without_usable_volume": int(snaps["volume_quote"].isna().sum()),
            "date_disagrees_with_unix": int(snaps["_date_disagrees"].sum()),
        },
        # Unreadable files belong to no window: every window says them. Column notes, for the files in it.
        warnings=[w for r in loaded.reports if r.unreadable or r.path in files for w in r.warnings()],
    )


def format_reports(reports: Sequence[FileReport]) -> str:
    """The per-file import table printed by ``python -m crypto_assets.market.csv_replay``."""

    def hour(ts: datetime | None) -> str:
        return ts.strftime("%Y-%m-%d %H:%M") if ts is not None else "-"

    rows = [
        (
            Path(r.path).name,
            f"{r.rows_read:,}",
            f"{r.rows_kept:,}",
            f"{r.duplicates_removed:,}",
            f"{r.quarantined:,}",
            hour(r.first_hour),
            hour(r.last_hour),
            f"{r.gaps:,}",
            ", ".join(f"{k}={v:,}" for k, v in sorted(r.quarantined_by_reason.items())) or "-",
            "; ".join(w.removeprefix(f"{Path(r.path).name}: ") for w in r.warnings()) or "-",
        )
        for r in reports
    ]
    header = (
        "file",
        "read",
        "kept",
        "dedup",
        "quar.",
        "first hour",
        "last hour",
        "gaps",
        "quarantined by reason",
        "notes",
    )
    align = ("left", "right", "right", "right", "right", "left", "left", "right", "left", "left")
    return tabulate(rows, headers=header, colalign=align, disable_numparse=True)


# --------------------------------------------------------------------------- loading and caching


def _resolve(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".parquet"))
            if not found:
                raise ValueError(f"{path}: directory holds no .csv or .parquet files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{path}: no such file or directory")
    if not files:
        raise ValueError("no market files given")
    return list(dict.fromkeys(p.resolve() for p in files))  # a file given twice is read once


def _load(paths: Sequence[str]) -> _Loaded:
    keys = []
    for path in _resolve(paths):
        stat = path.stat()
        keys.append((str(path), stat.st_mtime_ns, stat.st_size))
    return _load_files(tuple(keys))


@functools.lru_cache(maxsize=8)
def _load_files(keys: tuple[tuple[str, int, int], ...]) -> _Loaded:
    # Cached by (path, mtime, size) of every file: a backfill asks for many windows of one load.
    parsed: dict[str, _Parsed] = {}
    unreadable: dict[str, str] = {}
    for key in keys:
        try:
            parsed[key[0]] = _parse_file(*key)
        except ValueError as exc:  # one bad file never aborts the others; its report says why
            unreadable[key[0]] = str(exc).removeprefix(f"{key[0]}: ")
    if not parsed:
        raise ValueError(
            "no readable market file: " + "; ".join(f"{Path(p).name}: {why}" for p, why in unreadable.items())
        )
    records = pd.concat([p.records for p in parsed.values()], ignore_index=True)
    records["_anchor"] = records["partition_hour"].fillna(records.groupby("_path")["partition_hour"].transform("min"))
    good = records[records["reason"].isna()]
    kept, losers = _deduplicate(good)
    quarantine = pd.concat([records[records["reason"].notna()], losers], ignore_index=True)
    quarantine["_dup"] = quarantine["reason"].isin(["duplicate_hour", "exact_duplicate"])
    quarantine["source"] = SOURCE
    kept = kept.assign(source=SOURCE).sort_values(["partition_hour", "coin_id"], kind="stable", ignore_index=True)
    reports = [
        _report(path, records, kept, quarantine, parsed[path].unused_columns)
        if path in parsed
        else FileReport(path, 0, 0, 0, {}, None, None, 0, unreadable=unreadable[path])
        for path, _, _ in keys
    ]
    return _Loaded(kept, quarantine, reports)


@functools.lru_cache(maxsize=64)
def _parse_file(path: str, mtime_ns: int, size: int) -> _Parsed:
    """All records of one file, interpreted, with ``reason`` set on the rejected ones.

    Raises ``ValueError`` (message starting with the path) when the file is not a readable market file.
    """
    del mtime_ns, size  # part of the cache key only
    file = Path(path)
    try:
        fields = _read_parquet(file) if file.suffix.lower() == ".parquet" else _read_csv(file)
    except (UnicodeDecodeError, csv.Error, pd.errors.ParserError, OSError) as exc:
        raise ValueError(f"{file}: cannot be read as text CSV or Parquet ({type(exc).__name__}: {exc})") from exc
    if _is_plain(fields.names):
        records, unused = _parse_plain(fields), {}
    else:
        records, unused = _parse_candles(fields)
    if len(records) and records["partition_hour"].isna().all():
        raise ValueError(f"{file}: no record has a readable timestamp; is this an hourly market file?")
    records["_path"] = path
    unknown = {
        n: "not a column this importer reads" for n in fields.names if n not in _KNOWN and not n.startswith("volume ")
    }
    return _Parsed(records, {**unknown, **unused})


def _report(
    path: str, records: pd.DataFrame, kept: pd.DataFrame, quarantine: pd.DataFrame, unused_columns: dict[str, str]
) -> FileReport:
    mine = kept[kept["_path"] == path]
    rejected = quarantine[quarantine["_path"] == path]
    hours = mine.sort_values(["coin_id", "partition_hour"])
    steps = hours.groupby("coin_id")["partition_hour"].diff().dropna() / pd.Timedelta(hours=1)
    return FileReport(
        path=path,
        rows_read=int((records["_path"] == path).sum()),
        rows_kept=len(mine),
        duplicates_removed=int(rejected["_dup"].sum()),
        quarantined_by_reason={k: int(v) for k, v in rejected.loc[~rejected["_dup"], "reason"].value_counts().items()},
        first_hour=mine["partition_hour"].min().to_pydatetime() if len(mine) else None,
        last_hour=mine["partition_hour"].max().to_pydatetime() if len(mine) else None,
        gaps=int((steps - 1).clip(lower=0).sum()),
        unused_columns=unused_columns,
        rows_without_volume=int(mine["volume_quote"].isna().sum()),
        date_disagrees_with_unix=int(mine["_date_disagrees"].sum()),
    )


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


def _check_columns(path: Path, names: list[str]) -> None:
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{path}: duplicate column(s): {', '.join(duplicated)}")
    plain = _is_plain(names)
    missing = [c for c in (_PLAIN_REQUIRED if plain else _CANDLE_REQUIRED) if c not in names]
    if not plain and "unix" not in names and "date" not in names:
        missing.append("unix or date")
    if missing:
        kind = "plain snapshot" if plain else "OHLCV candle"
        raise ValueError(f"{path}: {kind} file is missing required column(s): {', '.join(missing)}")


def _read_csv(path: Path) -> _Fields:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    # The header is the first line, or the second after a URL / "Created on ..." line.
    header_at = next(
        (i for i, line in enumerate(lines[:2]) if _is_header([_canonical(n) for n in next(csv.reader([line]), [])])),
        None,
    )
    if header_at is None:
        raise ValueError(
            f"{path}: no recognisable header in the first two lines (expected e.g. "
            "'unix,date,symbol,open,high,low,close,...' or 'coin_id,symbol,observed_at,price')"
        )
    names = [_canonical(n) for n in next(csv.reader([lines[header_at]]))]
    _check_columns(path, names)
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
        raise ValueError(f"{path}: unbalanced quotes, records span lines")
    text = text.iloc[:, : len(names)].set_axis(names, axis=1)
    text = text.assign(_raw=raw.to_numpy(), _line=raw.index.to_numpy(), _nfields=n_fields.to_numpy())
    return _Fields(path, names, text)


def _read_parquet(path: Path) -> _Fields:
    frame = pd.read_parquet(path)
    names = [_canonical(str(c)) for c in frame.columns]
    if not _is_header(names):
        raise ValueError(f"{path}: no recognisable columns (expected e.g. coin_id, symbol, observed_at, price)")
    _check_columns(path, names)
    text = pd.DataFrame({n: frame[c].astype("str").astype(object) for n, c in zip(names, frame.columns)})
    raw = text[names[0]].str.cat([text[n] for n in names[1:]], sep=",", na_rep="") if len(frame) else ""
    text = text.assign(_raw=raw, _line=np.arange(1, len(frame) + 1), _nfields=len(names))
    return _Fields(path, names, text)


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
            "source_ref": fields.path.name + ":" + text["_line"].astype(str).astype(object),
            "raw_record": text["_raw"],
            "_line": text["_line"],
            "reason": pd.Series(None, index=text.index, dtype="object"),
            "detail": pd.Series(None, index=text.index, dtype="object"),
            "has_tradecount": False,
            "_date_disagrees": False,
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
    elif named := _PAIR_IN_FILE_NAME.fullmatch(fields.path.stem):
        symbol = pd.Series(named.group(1).upper(), index=text.index, dtype=object)
    else:
        raise ValueError(
            f"{fields.path}: no symbol column, and the file name does not name the pair "
            "(expected <Exchange>_<PAIR>_1h.csv, e.g. Bitstamp_BTCUSD_1h.csv)"
        )
    base, quote, coin_id = _split_pairs(symbol)
    records["symbol"], records["coin_id"] = base, coin_id
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
        ~quote.isin(USD_QUOTES),
        "non_usd_quote",
        lambda r: (
            f"pair {text.at[r.name, 'symbol']!r} is not quoted in a USD-like currency "
            f"({', '.join(sorted(USD_QUOTES))}); prices are stored in USD"
        ),
    )

    prices = {"open": "open", "high": "high", "low": "low", "close": "price"}  # file column -> record column
    volume_columns = [n for n in names if n == "volume" or n.startswith("volume ")]
    parsed = {c: _numbers(text[c]) for c in [*prices, *volume_columns]}
    for column, target in prices.items():
        records[target] = parsed[column][0]
    volumes = {c: parsed[c][0] for c in volume_columns}
    records["volume_quote"], understood = _quote_volume(base, quote, records["price"], volumes)
    records["market_cap"] = np.nan
    if "tradecount" in names:
        records["has_tradecount"] = _numbers(text["tradecount"])[0].notna()
    _check_values(records, text, {c: g for c, (_, g) in parsed.items()}, prices)
    pairs = ", ".join(sorted(f"{b}/{q}" for b, q in set(zip(base.dropna(), quote.dropna())))) or "no readable pair"
    unused = {
        c: f"a volume in a currency that is neither base nor quote of {pairs}"
        for c in volume_columns
        if c not in understood
    }
    return records, unused


def _split_pairs(symbol: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(base, quote, coin_id) of ``BASE/QUOTE``, ``BASE-QUOTE`` or ``BASEUSDT``; worked out per distinct pair."""
    distinct = pd.Series(symbol.unique(), dtype=object)
    split = distinct.str.extract(r"^([A-Z0-9]+)[/\-_]([A-Z0-9]+)$").fillna(distinct.str.extract(_GLUED_PAIR))
    base = dict(zip(distinct, split[0]))
    quote = dict(zip(distinct, split[1]))
    coin = {s: coin_id_for_symbol(b) for s, b in base.items() if isinstance(b, str)}
    return symbol.map(base), symbol.map(quote), symbol.map(coin)


def _quote_volume(
    base: pd.Series, quote: pd.Series, close: pd.Series, volumes: dict[str, pd.Series]
) -> tuple[pd.Series, set[str]]:
    """(quote volume, columns understood): ``Volume <QUOTE>`` (any USD-like one for a USD quote), else
    base volume * close. Understood columns name the base or the quote of some pair in the file."""
    out = pd.Series(np.nan, index=base.index)
    understood: set[str] = set()
    for (b, q), index in pd.DataFrame({"b": base, "q": quote}).dropna().groupby(["b", "q"]).groups.items():
        quote_cols = [f"volume {q}", *(f"volume {u}" for u in sorted(USD_QUOTES) if q in USD_QUOTES)]
        base_cols = [f"volume {b}", "volume"]
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


# --------------------------------------------------------------------------- de-duplication


def _deduplicate(good: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, losers) by the rule in the module docstring; losers carry reason and detail."""
    key = ["coin_id", "partition_hour"]
    contested = good.duplicated(key, keep=False)
    rivals = good[contested]  # only hours with several rows need ranking
    top_volume = rivals.groupby([*key, "observed_at"])["volume_quote"].transform("max") - VOLUME_TIE_USD
    ranked = rivals.assign(_top_volume=rivals["volume_quote"] >= top_volume).sort_values(
        [*key, "observed_at", "_top_volume", "has_tradecount", "raw_record", "_path", "_line"],
        ascending=[True, True, False, False, False, True, True, True],
        kind="stable",
    )
    first = ~ranked.duplicated(key)
    losers = ranked.loc[~first].drop(columns="_top_volume")
    won = ranked.loc[first].set_index(key).reindex(pd.MultiIndex.from_frame(losers[key]))
    same = pd.DataFrame(
        {
            c: (losers[c].to_numpy() == won[c].to_numpy()) | (losers[c].isna().to_numpy() & won[c].isna().to_numpy())
            for c in ["observed_at", *_PRICES, "volume_quote", "market_cap"]
        },
        index=losers.index,
    ).all(axis=1)
    losers["reason"] = np.where(same, "exact_duplicate", "duplicate_hour")
    losers["detail"] = [
        f"another row for {coin} at {hour:%Y-%m-%d %H:%M} was kept: {ref} (close {kc}, quote volume {kv}); "
        f"this row has close {lc}, quote volume {lv}"
        for coin, hour, ref, kc, kv, lc, lv in zip(
            losers["coin_id"],
            losers["partition_hour"],
            won["source_ref"],
            won["price"],
            won["volume_quote"],
            losers["price"],
            losers["volume_quote"],
        )
    ]
    kept = pd.concat([good[~contested], ranked.loc[first].drop(columns="_top_volume")])
    return kept, losers


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Import report for hourly market CSV / Parquet files.")
    parser.add_argument("paths", nargs="+", help="files or directories (*.csv, *.parquet)")
    args = parser.parse_args(argv)
    _, _, reports = load_market_files(args.paths)
    print(format_reports(reports))


if __name__ == "__main__":
    main()
