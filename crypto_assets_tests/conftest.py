"""Shared fixtures: a temporary DuckDB warehouse and an ephemeral Dagster instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from crypto_assets.warehouse import Warehouse

SHARED_MARKET_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "market"


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(database=str(tmp_path / "warehouse.duckdb"))


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as inst:
        yield inst


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover a partition range (a single-run backfill)."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def shared_market_data() -> Path:
    if not SHARED_MARKET_DATA.is_dir():
        pytest.skip(f"real market data not found at {SHARED_MARKET_DATA} (../shared is absent in this checkout)")
    return SHARED_MARKET_DATA
