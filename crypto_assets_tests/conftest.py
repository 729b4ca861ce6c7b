"""Shared fixtures: a temporary DuckDB warehouse and an ephemeral Dagster instance."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

# Tests run on partitions from a fixed start, whatever a local quickstart remembered (.local/partitions_start).
os.environ["CRYPTO_ASSETS_PARTITIONS_START"] = "2026-01-01"

import dagster as dg  # noqa: E402
import pytest  # noqa: E402

from crypto_assets.warehouse import Warehouse  # noqa: E402

SHARED_MARKET_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "market"


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(database=str(tmp_path / "warehouse.duckdb"))


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as inst:
        yield inst


def resources_for(warehouse: Warehouse, **more) -> dict:
    """The resources assets read, for a test warehouse: reports go to a temporary folder."""
    import tempfile

    from crypto_assets.resources import Reports

    return {"warehouse": warehouse, "reports": Reports(folder=tempfile.mkdtemp(prefix="reports-")), **more}


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover a partition range (a single-run backfill)."""
    from crypto_assets.run_tags import partition_range_tags

    return partition_range_tags(first, last)


def shared_market_data() -> Path:
    if not SHARED_MARKET_DATA.is_dir():
        pytest.skip(f"real market data not found at {SHARED_MARKET_DATA} (../shared is absent in this checkout)")
    return SHARED_MARKET_DATA


PREPARED_FIRST_DAY, PREPARED_LAST_DAY = "2026-02-22", "2026-03-14"
# Days whose holdout holds injected anomalies (the simulator is deterministic, so this is stable).
PREPARED_SPLITS = ("2026-03-09", "2026-03-14")


@pytest.fixture(scope="session")
def prepared_database(tmp_path_factory) -> Path:
    """21 days of synthetic snapshots, features and labels, and two daily splits, built once."""
    from crypto_assets.assets import features, ingestion, splits
    from crypto_assets.market.sources import SyntheticMarket

    path = tmp_path_factory.mktemp("prepared") / "warehouse.duckdb"
    resources = {"warehouse": Warehouse(database=str(path)), "market_source": SyntheticMarket()}
    # An in-memory instance: this fixture is about the warehouse.
    with dg.DagsterInstance.ephemeral() as inst:
        hourly = dg.materialize(
            [ingestion.market_snapshots, features.coin_features, features.coin_labels],
            instance=inst,
            resources=resources,
            tags=range_tags(PREPARED_FIRST_DAY, PREPARED_LAST_DAY),
        )
        assert hourly.success
        for day in PREPARED_SPLITS:
            assert dg.materialize(
                [splits.training_splits], instance=inst, resources=resources, partition_key=day
            ).success
    anomalies = resources["warehouse"].query("SELECT split_id, anomaly_rows FROM ml.split_summaries ORDER BY split_id")
    assert (anomalies["anomaly_rows"] >= 30).all(), f"too few injected anomalies to evaluate a detector: {anomalies}"
    return path


def private_copy(database: Path, folder: Path) -> Warehouse:
    """A copy of a database built once per session, for one test to write to."""
    import shutil

    copy = folder / "warehouse.duckdb"
    shutil.copy(database, copy)
    return Warehouse(database=str(copy))


@pytest.fixture
def prepared_warehouse(prepared_database: Path, tmp_path: Path) -> Warehouse:
    """A private copy of the prepared database, safe to write to."""
    return private_copy(prepared_database, tmp_path)


# --- the production instance: Dagster storage on PostgreSQL ---------------------------------------


def _postgres_server_url() -> str:
    """DAGSTER_PG_URL (or the default), after checking the server answers.

    When it does not: skip, or under CI=true fail.
    """
    from crypto_assets import instance as instance_setup

    url = instance_setup.postgres_url()
    try:
        instance_setup.ensure_database(url)
    except instance_setup.InstanceSetupError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: the production-instance tests need PostgreSQL and cannot skip. {exc}")
        pytest.skip(f"PostgreSQL is not reachable, production-instance test skipped: {exc}")
    return url


@pytest.fixture
def postgres_url(monkeypatch) -> str:
    """A new, empty PostgreSQL database for one test (dropped afterwards), also set as DAGSTER_PG_URL."""
    from crypto_assets import instance as instance_setup

    server = _postgres_server_url()
    url = server.rsplit("/", 1)[0] + f"/crypto_assets_test_{uuid.uuid4().hex[:12]}"
    instance_setup.ensure_database(url)
    monkeypatch.setenv(instance_setup.PG_URL_ENV, url)
    yield url
    instance_setup.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def instance_home(request, tmp_path) -> Path:
    """A DAGSTER_HOME prepared as the scripts prepare it.

    The repo's dagster.yaml (SQLite) or dagster.prod.yaml (PostgreSQL).
    """
    from crypto_assets import instance as instance_setup

    if request.param == "postgres":
        request.getfixturevalue("postgres_url")
    return instance_setup.prepare_home(
        tmp_path / f"dagster_home_{request.param}", "prod" if request.param == "postgres" else "local"
    )


@pytest.fixture
def home_instance(instance_home: Path) -> dg.DagsterInstance:
    """The Dagster instance of ``instance_home`` (SQLite or PostgreSQL storage)."""
    with dg.DagsterInstance.from_config(str(instance_home)) as inst:
        yield inst
