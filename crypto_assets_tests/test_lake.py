"""The DuckLake warehouse: the same tables and rows as the DuckDB file, writers of different partitions
side by side, the registry's guarantees without primary keys, and readers that never wait for a writer."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid

import dagster as dg
import duckdb
import pandas as pd
import pytest

from crypto_assets import registry
from crypto_assets.lake import PARTITIONING, file_counts, is_write_conflict, maintain
from crypto_assets.settings import SettingsError, read_settings
from crypto_assets.warehouse import LAYOUT_VERSION, Warehouse, replace_window, transaction

from .cluster_support import ROOT, lake_warehouse_fixture  # noqa: F401 - the lake_warehouse fixture
from .conftest import range_tags

FIRST, LAST = "2026-02-22", "2026-03-03"  # 10 days, 20 coins


def _materialize(warehouse, tags):
    from crypto_assets.assets import features, ingestion
    from crypto_assets.market.sources import SyntheticMarket

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [ingestion.market_snapshots, features.coin_features, features.coin_labels],
            instance=instance,
            resources={"warehouse": warehouse, "market_source": SyntheticMarket()},
            tags=tags,
        )
    assert result.success


def test_the_lake_holds_the_same_rows_as_the_file_and_a_rerun_replaces_its_partition(lake_warehouse, tmp_path):
    file = Warehouse(database=str(tmp_path / "warehouse.duckdb"))
    for warehouse in (lake_warehouse, file):
        _materialize(warehouse, range_tags(FIRST, LAST))
    for table in ("raw.market_snapshots", "features.coin_features", "features.coin_labels"):
        sql = f"SELECT * EXCLUDE (ingested_at) FROM {table}" if table.startswith("raw") else f"SELECT * FROM {table}"
        lake, expected = (w.query(sql + " ORDER BY ALL") for w in (lake_warehouse, file))
        assert len(lake) == 10 * 24 * 20
        # Window sums may add in another order: equal to ~1e-15 (coin_features.sql).
        pd.testing.assert_frame_equal(lake, expected, check_exact=False, rtol=1e-9)

    _materialize(lake_warehouse, {"dagster/partition": "2026-02-25"})  # re-run one day
    counts = lake_warehouse.query(
        "SELECT count(*) AS n, count(DISTINCT (coin_id, partition_hour)) AS keys FROM features.coin_features"
    ).iloc[0]
    assert counts["n"] == counts["keys"] == 10 * 24 * 20
    history = lake_warehouse.query("SELECT version, note FROM meta.layout_history")
    assert history.values.tolist() == [[LAYOUT_VERSION, "new file"]]
    with lake_warehouse.connect() as conn:
        files = file_counts(conn)
    # one file per day and table: a partition's rewrite touches only its own files
    assert files["raw.market_snapshots"] == files["features.coin_features"] == 10


def _write_day(conn, day: str, price: float) -> None:
    start = pd.Timestamp(day)
    frame = pd.DataFrame(
        {
            "coin_id": ["btc"] * 24,
            "symbol": ["BTC"] * 24,
            "observed_at": pd.date_range(start, periods=24, freq="h"),
            "partition_hour": pd.date_range(start, periods=24, freq="h"),
            "price": [price] * 24,
            "source": ["test"] * 24,
            "ingested_at": [start] * 24,
        }
    )
    replace_window(
        conn, "raw.market_snapshots", frame, column="partition_hour", start=start, end=start + pd.Timedelta(days=1)
    )


class _CommitTogether:
    """A connection whose COMMIT waits until every racer reached its own COMMIT: the transactions overlap."""

    def __init__(self, conn, barrier: threading.Barrier):
        self._conn, self._barrier = conn, barrier

    def execute(self, sql, *args):
        if sql == "COMMIT":
            self._barrier.wait(timeout=60)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def _race(warehouse, *bodies):
    """Run each ``body(conn)`` in its own thread and connection, committing together; their results or errors."""
    barrier = threading.Barrier(len(bodies))
    outcomes: list = [None] * len(bodies)

    def run(i, body):
        conn = warehouse._open()  # the raw connection: errors as DuckLake raises them
        try:
            outcomes[i] = body(_CommitTogether(conn, barrier))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcomes[i] = exc
            barrier.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(i, b)) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return outcomes


def _in_transaction(body):
    def run(conn):
        with transaction(conn):
            body(conn)
        return "committed"

    return run


def test_writers_of_different_partitions_commit_side_by_side_and_of_the_same_one_conflict(lake_warehouse):
    with lake_warehouse.connect() as conn:
        with transaction(conn):
            for day in ("2026-03-01", "2026-03-02"):
                _write_day(conn, day, 1.0)
    different = _race(
        lake_warehouse,
        _in_transaction(lambda c: _write_day(c, "2026-03-01", 2.0)),
        _in_transaction(lambda c: _write_day(c, "2026-03-02", 3.0)),
    )
    assert different == ["committed", "committed"]
    same = _race(
        lake_warehouse,
        _in_transaction(lambda c: _write_day(c, "2026-03-01", 4.0)),
        _in_transaction(lambda c: _write_day(c, "2026-03-01", 5.0)),
    )
    assert sorted(map(str, same))[-1] == "committed" and sum(is_write_conflict(o) for o in same) == 1, same
    rows = lake_warehouse.query(
        "SELECT partition_hour::DATE::VARCHAR AS day, count(*) AS n, min(price) AS price FROM raw.market_snapshots "
        "GROUP BY 1 ORDER BY 1"
    )
    winner = 4.0 if same[0] == "committed" else 5.0
    assert rows.values.tolist() == [["2026-03-01", 24, winner], ["2026-03-02", 24, 3.0]]


def test_a_write_conflict_in_a_step_is_a_bounded_step_retry(lake_warehouse):
    with pytest.raises(dg.RetryRequested) as raised:
        with lake_warehouse.connect():
            raise duckdb.TransactionException("Failed to commit DuckLake transaction. Transaction conflict - test")
    assert raised.value.max_retries == lake_warehouse.conflict_retries
    with pytest.raises(duckdb.TransactionException, match="other"):  # any other error is not retried
        with lake_warehouse.connect():
            raise duckdb.TransactionException("other")


def _register(conn, name="m"):
    """A version of its own: trained on a frame no other version was (the same inputs would be the same version)."""
    version, _ = registry.register_version(
        conn,
        model_name=name,
        model={"w": 1},
        features=["a"],
        params={},
        lineage=registry.Lineage(
            split_id="2026-03-15", feature_spec_version="spec1", training_frame_sha256=uuid.uuid4().hex
        ),
        metrics={},
        run_id=None,
    )
    return version


def _decide(to_version, expected_from):
    def run(conn):
        return registry.record_decision(
            conn,
            model_name="m",
            to_version=to_version,
            expected_from=expected_from,
            outcome="promoted",
            trigger="manual",
            reason="race",
            gate_results={},
            run_id=None,
        )["to_version"]

    return run


def test_racing_promotions_on_the_lake_have_exactly_one_winner(lake_warehouse):
    with lake_warehouse.connect() as conn:
        for _ in range(4):
            _register(conn)
    expected, winners_so_far = None, []
    for a, b in (("v1", "v2"), ("v3", "v4"), ("v2", "v1")):  # the first race has no champion to compare with
        outcomes = _race(lake_warehouse, _decide(a, expected), _decide(b, expected))
        winners = [o for o in outcomes if isinstance(o, str)]
        assert len(winners) == 1 and sum(isinstance(o, registry.PromotionConflict) for o in outcomes) == 1, outcomes
        with lake_warehouse.connect() as conn:
            champions = conn.execute("SELECT version_id FROM registry.aliases WHERE alias = 'champion'").fetchall()
            assert champions == [(winners[0],)]
            assert registry.champion(conn, "m").version_id == winners[0]
        expected = winners[0]
        winners_so_far.append(expected)
    with lake_warehouse.connect() as conn:
        events = registry.promotion_events(conn, "m")
    assert [e["to_version"] for e in events] == winners_so_far  # losers recorded nothing


def test_racing_registrations_never_share_a_version_id(lake_warehouse):
    outcomes = _race(lake_warehouse, _register, _register)
    assert sum(isinstance(o, registry.ModelVersion) for o in outcomes) == 1
    assert sum(is_write_conflict(o) for o in outcomes) == 1, outcomes
    with lake_warehouse.connect() as conn:
        _register(conn)  # the loser, retried
        ids = conn.execute("SELECT version_id FROM registry.model_versions ORDER BY version_number").fetchall()
    assert ids == [("v1",), ("v2",)]


HOLD_A_WRITE = """
    import sys, time
    from crypto_assets.lake import LakeWarehouse
    from crypto_assets.warehouse import transaction
    warehouse = LakeWarehouse(catalog=sys.argv[1], data_path=sys.argv[2])
    with warehouse.connect() as conn:
        with transaction(conn):
            conn.execute("UPDATE raw.market_snapshots SET price = price * 2")
            print("WRITING", flush=True)
            sys.stdin.readline()
    print("COMMITTED", flush=True)
"""


def test_readers_read_the_lake_while_another_process_writes(lake_warehouse):
    _materialize(lake_warehouse, {"dagster/partition": FIRST})
    before = lake_warehouse.query("SELECT sum(price) AS s FROM raw.market_snapshots")["s"].iloc[0]
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD_A_WRITE), lake_warehouse.catalog, lake_warehouse.data_path],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "WRITING"
        started = time.monotonic()
        # The serving and UI read paths: Warehouse.query from this process while the write is open.
        during = lake_warehouse.query("SELECT sum(price) AS s FROM raw.market_snapshots")["s"].iloc[0]
        assert during == pytest.approx(before) and time.monotonic() - started < 10
        writer.stdin.write("\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "COMMITTED"
    finally:
        writer.kill()
        writer.wait()
    after = lake_warehouse.query("SELECT sum(price) AS s FROM raw.market_snapshots")["s"].iloc[0]
    assert after == pytest.approx(2 * before)


def test_maintenance_retires_the_files_of_rewritten_partitions(lake_warehouse):
    for _ in range(3):  # three hourly rewrites of the open day
        _materialize(lake_warehouse, {"dagster/partition": FIRST})
    data = lake_warehouse.data_path
    on_disk = lambda: sum(1 for _ in __import__("pathlib").Path(data).rglob("*.parquet"))  # noqa: E731
    before = on_disk()
    with lake_warehouse.connect() as conn:
        after = maintain(conn, keep_snapshots_hours=0)
        live = file_counts(conn)
    assert after["live_files"] == sum(live.values()) < before
    assert on_disk() == after["live_files"]
    assert live["raw.market_snapshots"] == 1


def test_every_partitioned_table_exists_in_the_schema():
    from crypto_assets.lake import LAKE_SCHEMA_SQL

    for table in PARTITIONING:
        assert f"CREATE TABLE IF NOT EXISTS {table} " in LAKE_SCHEMA_SQL


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CRYPTO_ASSETS_WAREHOUSE": "s3"}, "CRYPTO_ASSETS_WAREHOUSE must be one of file, lake"),
        (
            {"CRYPTO_ASSETS_WAREHOUSE": "lake", "CRYPTO_ASSETS_LAKE_CATALOG": "postgresql://u:hunter2@h/db"},
            "must not hold a password",
        ),
        ({"CRYPTO_ASSETS_WAREHOUSE": "lake", "CRYPTO_ASSETS_LAKE_CATALOG": "host=h user=u"}, "names no database"),
        ({"CRYPTO_ASSETS_WAREHOUSE": "lake", "CRYPTO_ASSETS_LAKE_CATALOG": "=bad= x"}, "is not a libpq"),
        ({"CRYPTO_ASSETS_UNIVERSE_SIZE": "1001"}, "CRYPTO_ASSETS_UNIVERSE_SIZE must be from 1 to 1000"),
        ({"CRYPTO_ASSETS_BACKFILL_DAYS_PER_RUN": "x"}, "CRYPTO_ASSETS_BACKFILL_DAYS_PER_RUN must be a whole number"),
    ],
)
def test_lake_settings_fail_in_one_line_naming_the_variable_never_quoting_a_password(env, message):
    with pytest.raises(SettingsError, match=message) as raised:
        read_settings(env)
    assert "\n" not in str(raised.value) and "hunter2" not in str(raised.value)


def test_the_cluster_deployment_defaults_to_the_lake_and_chunked_backfills():
    settings = read_settings({"DAGSTER_DEPLOYMENT": "cluster"})
    assert settings.warehouse == "lake" and settings.backfill_days_per_run == 30
    assert "postgres" not in repr(settings)  # the catalog string is kept out of reprs
    local = read_settings({})
    assert local.warehouse == "file" and local.backfill_days_per_run is None


def test_the_daily_training_path_runs_on_the_lake(lake_warehouse, tmp_path):
    """Splits, candidates (registry writes), evaluations and drift read and write the lake like the file."""
    from crypto_assets.assets import candidates, drift, evaluations, splits
    from crypto_assets.market.sources import SyntheticMarket
    from crypto_assets.resources import Reports

    from .conftest import PREPARED_FIRST_DAY, PREPARED_SPLITS

    _materialize(lake_warehouse, range_tags(PREPARED_FIRST_DAY, PREPARED_SPLITS[-1]))
    resources = {
        "warehouse": lake_warehouse,
        "market_source": SyntheticMarket(),
        "reports": Reports(folder=str(tmp_path / "reports")),
    }
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [
                splits.training_splits,
                *candidates.candidate_assets,
                *evaluations.evaluation_assets,
                drift.feature_drift,
            ],
            instance=instance,
            resources=resources,
            partition_key=PREPARED_SPLITS[-1],
            raise_on_error=False,
        )
    failures = [e.step_failure_data.error.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success and not failures, failures  # a refusal is a decision, not a crash
    versions = lake_warehouse.query("SELECT model_name, version_id FROM registry.model_versions ORDER BY ALL")
    assert versions.values.tolist() == [["anomaly_detector", "v1"], ["volatility_model", "v1"]]
    assert lake_warehouse.query("SELECT count(*) AS n FROM ml.drift_summaries")["n"].iloc[0] > 0
    evaluated = lake_warehouse.query("SELECT DISTINCT model_name FROM ml.model_evaluations ORDER BY 1")
    assert evaluated["model_name"].tolist() == ["anomaly_detector", "volatility_model"]


def test_a_universe_of_1000_coins_is_a_configuration_change():
    from crypto_assets.resources import build_resources

    source = build_resources(read_settings({"CRYPTO_ASSETS_UNIVERSE_SIZE": "1000"}))["market_source"]
    coins = source.expected_coins()
    assert source.universe_size == 1000 and len(set(coins)) == 1000
    assert build_resources(read_settings({}))["market_source"].universe_size == 20


def test_processes_opening_a_new_lake_at_once_all_succeed(lake_warehouse):
    # Two Celery workers starting their first steps together once failed with "cannot attach": the
    # first ATTACH of a new lake creates DuckLake's tables in PostgreSQL, and they collided.
    script = textwrap.dedent(
        f"""
        from crypto_assets.lake import LakeWarehouse
        warehouse = LakeWarehouse(catalog={lake_warehouse.catalog!r}, data_path={lake_warehouse.data_path!r})
        with warehouse.connect() as conn:
            print(conn.execute("SELECT count(*) FROM raw.market_snapshots").fetchone()[0])
        """
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outcomes = [p.communicate(timeout=180) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], [err[-800:] for _, err in outcomes]
    assert [out.strip() for out, _ in outcomes] == ["0"] * 4
