"""UTC hourly and daily partitions shared by every asset.

The first partition comes from ``CRYPTO_ASSETS_PARTITIONS_START`` (``YYYY-MM-DD``), default
2026-01-01; replaying the bundled Binance files needs an earlier start such as 2020-08-01.
"""

from __future__ import annotations

import os
from datetime import datetime

import dagster as dg

DEFAULT_START = "2026-01-01"


def partitions_start() -> str:
    raw = os.environ.get("CRYPTO_ASSETS_PARTITIONS_START", DEFAULT_START)
    try:
        datetime.strptime(raw, "%Y-%m-%d")
    except ValueError:
        raise ValueError(f"CRYPTO_ASSETS_PARTITIONS_START must be a date YYYY-MM-DD, got {raw!r}") from None
    return raw


hourly_partitions = dg.HourlyPartitionsDefinition(start_date=f"{partitions_start()}-00:00", timezone="UTC")
daily_partitions = dg.DailyPartitionsDefinition(start_date=partitions_start(), timezone="UTC")
