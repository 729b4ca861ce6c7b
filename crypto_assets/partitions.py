"""Daily UTC partitions shared by every asset.

Hourly rows (snapshots, features, labels, scores, outcomes) are stored per hour but partitioned
per day: Dagster records one event per partition per asset, so a year of history is 365
partitions instead of 8,760 (see the README, "Partitions"). ``daily_data_partitions`` includes
the current, still open day (``end_offset=1``): the hourly schedule re-materializes it every hour,
and ingestion fetches only the hours that have already ended (:func:`observed_window`); the assets
downstream read the rows it stored.
Training, evaluation and drift use ``daily_partitions``: complete days only.

The first partition comes from ``CRYPTO_ASSETS_PARTITIONS_START`` (``crypto_assets/settings.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from crypto_assets.settings import DAY_FMT, read_settings

__all__ = [
    "DAY",
    "DAY_FMT",
    "daily_data_partitions",
    "daily_partitions",
    "current_hour",
    "observed_window",
    "data_backfill_policy",
]

# The daily partition key of a row's partition_hour, in SQL: per-day facts are GROUP BY this.
DAY = "strftime(partition_hour, '%Y-%m-%d')"

_SETTINGS = read_settings()
_START = _SETTINGS.partitions_start
daily_data_partitions = dg.DailyPartitionsDefinition(start_date=_START, timezone="UTC", end_offset=1)
daily_partitions = dg.DailyPartitionsDefinition(start_date=_START, timezone="UTC")

# How a backfill of the hourly data is cut into runs. One machine: a single run (Dagster's
# bookkeeping per run costs more than the data work of a day). The cluster: runs of
# CRYPTO_ASSETS_BACKFILL_DAYS_PER_RUN days, which workers take side by side; a chunk of days is
# independent work because every hour's features read only the coins of that hour and the 200 hours
# before it (already-written snapshots), whereas cutting by coin would split the cross-sectional
# features (medians and ranks over all coins of an hour).
data_backfill_policy = (
    dg.BackfillPolicy.multi_run(max_partitions_per_run=_SETTINGS.backfill_days_per_run)
    if _SETTINGS.backfill_days_per_run
    else dg.BackfillPolicy.single_run()
)


def current_hour(now: datetime | None = None) -> datetime:
    """The start of the hour in progress (UTC): hours before it have ended."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def observed_window(window: dg.TimeWindow, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The hours of ``window`` that have ended by ``now``: [start, min(end, current hour)).

    Empty (start == end) when the window has not begun yet; the open day is partly observed.
    """
    end = min(window.end, current_hour(now))
    return window.start, max(window.start, end)
