"""Run tags that Dagster reads but exports no public constant for.

A single-run backfill over a partition range is a run with these two tags (the UI's backfill
launcher sets them). ``crypto_assets_tests/test_concurrency.py::test_range_tags_are_what_dagster_reads`` checks them against Dagster's
own values, so an upgrade that renames them fails a test instead of silently running one
partition.
"""

from __future__ import annotations

PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run cover the partitions ``first`` .. ``last`` (inclusive)."""
    return {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last}
