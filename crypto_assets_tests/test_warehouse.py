"""The DuckDB file's layout: new files are stamped, older layouts migrated, newer ones refused,
and rows written by another feature spec never silently mixed into a split."""

import dagster as dg
import duckdb
import pytest

from crypto_assets.assets import splits
from crypto_assets.warehouse import LAYOUT_VERSION, Warehouse, WarehouseLayoutError, layout_version

from .conftest import PREPARED_SPLITS


def test_a_new_file_is_stamped_with_the_current_layout(warehouse):
    history = warehouse.query("SELECT version, note FROM meta.layout_history")
    assert history.values.tolist() == [[LAYOUT_VERSION, "new file"]]


def test_a_file_from_before_layouts_were_recorded_is_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as conn:  # what the hourly-partition release wrote: tables, no meta schema
        conn.execute("CREATE SCHEMA raw")
        conn.execute(
            "CREATE TABLE raw.market_snapshots (coin_id VARCHAR NOT NULL, symbol VARCHAR NOT NULL, "
            "observed_at TIMESTAMP NOT NULL, partition_hour TIMESTAMP NOT NULL, "
            "price DOUBLE, open DOUBLE, high DOUBLE, low DOUBLE, volume_quote DOUBLE, "
            "market_cap DOUBLE, source VARCHAR NOT NULL, ingested_at TIMESTAMP NOT NULL)"
        )
        conn.execute(
            "INSERT INTO raw.market_snapshots VALUES ('bitcoin', 'BTC', '2026-03-01 05:00', '2026-03-01 05:00', "
            "100, NULL, NULL, NULL, 1e6, NULL, 'synthetic', '2026-03-01 06:00')"
        )
        assert layout_version(conn) == 1
    warehouse = Warehouse(database=str(path))
    history = warehouse.query("SELECT version, note FROM meta.layout_history")
    assert history["version"].tolist() == [LAYOUT_VERSION]
    assert history["note"].iloc[0].startswith("from 1: daily partitions")
    assert warehouse.query("SELECT count(*) AS n FROM raw.market_snapshots")["n"].iloc[0] == 1


def test_a_file_from_a_newer_release_is_refused(warehouse):
    with warehouse.connect() as conn:
        conn.execute(
            "INSERT INTO meta.layout_history VALUES (?, now()::TIMESTAMP, 'from the future')", [LAYOUT_VERSION + 1]
        )
    with pytest.raises(
        WarehouseLayoutError, match=rf"layout version {LAYOUT_VERSION + 1}.*reads up to {LAYOUT_VERSION}"
    ):
        with warehouse.connect():
            pass


def test_a_split_refuses_features_computed_by_another_spec(prepared_warehouse, instance):
    day = PREPARED_SPLITS[-1]
    split_query = "SELECT * FROM ml.split_summaries WHERE split_id = ? ORDER BY ALL"
    before = prepared_warehouse.query(split_query, [day])
    with prepared_warehouse.connect() as conn:
        conn.execute(
            "UPDATE features.coin_features SET feature_spec_version = 'old-spec'"
            " WHERE partition_hour::DATE = DATE '2026-03-10'"
        )  # inside the window
    result = dg.materialize(
        [splits.training_splits],
        instance=instance,
        partition_key=day,
        resources={"warehouse": prepared_warehouse},
        raise_on_error=False,
    )
    assert not result.success
    failure = result.failure_data_for_node("training_splits").user_failure_data
    assert "old-spec" in failure.description and "re-materialize coin_features for 2026-03-10" in failure.description
    assert prepared_warehouse.query(split_query, [day]).equals(before)  # the previous split stays as it was
