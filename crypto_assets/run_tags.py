"""Run tags that Dagster reads but exports no public constant for.

A single-run backfill over a partition range is a run with the two range tags (the UI's backfill
launcher sets them); a run a sensor requested carries the sensor's name and the request's run key
(the daemon sets them, and skips a run key it has seen). ``crypto_assets_tests/test_concurrency.py``
checks them against Dagster's own values, so an upgrade that renames them fails a test instead of
silently running one partition or deciding an evaluation twice.
"""

from __future__ import annotations

PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
SENSOR_NAME_TAG = "dagster/sensor_name"
RUN_KEY_TAG = "dagster/run_key"


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run cover the partitions ``first`` .. ``last`` (inclusive)."""
    return {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last}
