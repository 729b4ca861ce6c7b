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


PREPARED_FIRST_HOUR, PREPARED_LAST_HOUR = "2026-02-22-00:00", "2026-03-14-23:00"
# Days whose holdout holds injected anomalies (the simulator is deterministic, so this is stable).
PREPARED_SPLITS = ("2026-03-09", "2026-03-14")


@pytest.fixture(scope="session")
def prepared_database(tmp_path_factory) -> Path:
    """16 days of synthetic snapshots, features and labels, and two daily splits, built once."""
    from crypto_assets.assets import features, ingestion, splits
    from crypto_assets.resources import MarketSource

    path = tmp_path_factory.mktemp("prepared") / "warehouse.duckdb"
    resources = {"warehouse": Warehouse(database=str(path)), "market_source": MarketSource()}
    # An in-memory instance: this fixture is about the warehouse, and SQLite event storage would
    # spend minutes recording ~2,000 per-partition materializations.
    with dg.DagsterInstance.ephemeral() as inst:
        hourly = dg.materialize(
            [ingestion.market_snapshots, features.coin_features, features.coin_labels],
            instance=inst, resources=resources, tags=range_tags(PREPARED_FIRST_HOUR, PREPARED_LAST_HOUR),
        )
        assert hourly.success
        for day in PREPARED_SPLITS:
            assert dg.materialize([splits.training_splits], instance=inst, resources=resources, partition_key=day).success
    with resources["warehouse"].connect() as conn:
        for day in PREPARED_SPLITS:
            holdout = splits.load_split(conn, day, "holdout", with_ground_truth=True)
            assert holdout["is_anomaly"].sum() >= 3, f"split {day} has too few anomalies to evaluate a detector"
    return path


@pytest.fixture
def prepared_warehouse(prepared_database: Path, tmp_path: Path) -> Warehouse:
    """A private copy of the prepared database, safe to write to."""
    import shutil

    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(prepared_database, copy)
    return Warehouse(database=str(copy))
