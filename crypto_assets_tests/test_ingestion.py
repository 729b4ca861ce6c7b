import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from crypto_assets.assets import ingestion
from crypto_assets.market.schema import SNAPSHOT_COLUMNS, SourceBatch, conform
from crypto_assets.market.sources import SyntheticMarket
from crypto_assets.partitions import daily_data_partitions, observed_window
from crypto_assets.resources import build_resources
from crypto_assets.settings import SettingsError, read_settings
from crypto_assets.warehouse import Warehouse, replace_window, transaction

from .conftest import range_tags

ASSETS = [ingestion.market_snapshots]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def materialize(warehouse, instance, source=None, **kwargs):
    return dg.materialize(
        ASSETS,
        instance=instance,
        resources={"warehouse": warehouse, "market_source": source or SyntheticMarket()},
        raise_on_error=False,
        **kwargs,
    )


def test_materializing_a_partition_twice_gives_the_same_rows(warehouse, instance):
    first = materialize(warehouse, instance, partition_key="2026-03-01")
    assert first.success
    rows_1 = warehouse.query(
        "SELECT * EXCLUDE (ingested_at) FROM raw.market_snapshots ORDER BY partition_hour, coin_id"
    )
    assert len(rows_1) == 24 * 20
    assert materialize(warehouse, instance, partition_key="2026-03-01").success
    rows_2 = warehouse.query(
        "SELECT * EXCLUDE (ingested_at) FROM raw.market_snapshots ORDER BY partition_hour, coin_id"
    )
    pd.testing.assert_frame_equal(rows_1, rows_2)
    # a neighbouring partition adds its own day and leaves this one alone
    assert materialize(warehouse, instance, partition_key="2026-03-02").success
    counts = warehouse.query(
        "SELECT partition_hour::DATE AS day, count(*) AS n FROM raw.market_snapshots GROUP BY 1 ORDER BY 1"
    )
    assert counts["n"].tolist() == [24 * 20, 24 * 20]


def test_the_open_day_holds_only_the_hours_that_have_ended(warehouse, instance):
    now = datetime.now(UTC)
    today = now.strftime("%Y-%m-%d")
    assert today in daily_data_partitions.get_partition_keys()  # end_offset=1: today is a partition
    assert materialize(warehouse, instance, partition_key=today).success
    rows = warehouse.query("SELECT count(*) AS n, max(partition_hour) AS last FROM raw.market_snapshots").iloc[0]
    # Hours that ended before the run: every coin, and nothing from the hour in progress or later.
    assert rows["n"] in (now.hour * 20, (now.hour + 1) * 20)  # the clock may pass an hour during the run
    if rows["n"]:
        assert rows["last"] < pd.Timestamp(now.replace(tzinfo=None)).floor("h") + pd.Timedelta(hours=1)


def test_observed_window_stops_at_the_hour_in_progress():
    day = dg.TimeWindow(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
    assert observed_window(day, now=datetime(2026, 3, 1, 10, 5, tzinfo=UTC))[1] == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert observed_window(day, now=datetime(2026, 3, 5, tzinfo=UTC)) == (day.start, day.end)
    assert observed_window(day, now=datetime(2026, 2, 27, tzinfo=UTC)) == (day.start, day.start)


@pytest.mark.parametrize(
    ("schedule", "tick", "partition"),
    [
        ("hourly_ingest_and_score_schedule", datetime(2026, 3, 2, 0, 5), "2026-03-01"),  # 23:00 just ended
        ("hourly_ingest_and_score_schedule", datetime(2026, 3, 2, 1, 5), "2026-03-02"),
        ("hourly_labels_schedule", datetime(2026, 3, 2, 6, 15), "2026-03-01"),  # 23:00's horizon just ingested
        ("hourly_labels_schedule", datetime(2026, 3, 2, 7, 15), "2026-03-02"),
    ],
)
def test_hourly_schedules_rerun_the_day_holding_the_hour_due(schedule, tick, partition):
    from crypto_assets.definitions import defs

    definition = defs.resolve_schedule_def(schedule)
    repository = defs.get_repository_def()

    def run_request(at: datetime) -> dg.RunRequest:
        context = dg.build_schedule_context(scheduled_execution_time=at.replace(tzinfo=UTC), repository_def=repository)
        return definition.evaluate_tick(context).run_requests[0]

    request, later = run_request(tick), run_request(tick + timedelta(hours=1))
    assert request.partition_key == partition
    assert request.run_key != later.run_key  # one run per hour, though 24 ticks share a partition


def test_seven_days_backfill_in_one_run(warehouse, instance):
    result = materialize(warehouse, instance, tags=range_tags("2026-03-01", "2026-03-07"))
    assert result.success
    assert len(instance.get_runs()) == 1
    stats = warehouse.query(
        "SELECT count(*) AS n, count(DISTINCT partition_hour) AS hours, count(DISTINCT coin_id) AS coins"
        " FROM raw.market_snapshots"
    ).iloc[0]
    assert (stats["n"], stats["hours"], stats["coins"]) == (7 * 24 * 20, 168, 20)
    materialized = instance.get_materialized_partitions(dg.AssetKey("market_snapshots"))
    assert len(materialized) == 7
    truth = warehouse.query("SELECT count(*) AS n FROM raw.anomaly_ground_truth").iloc[0]["n"]
    assert truth > 0
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks


def _write(warehouse: Warehouse, frame: pd.DataFrame, start=T0, end=T0 + timedelta(hours=1)):
    with warehouse.connect() as conn, transaction(conn):
        replace_window(
            conn,
            "raw.market_snapshots",
            conform(frame, SNAPSHOT_COLUMNS),
            column="partition_hour",
            start=start,
            end=end,
        )


def _good_rows(coins=("bitcoin", "ethereum"), hour=T0) -> pd.DataFrame:
    naive = hour.replace(tzinfo=None)
    return pd.DataFrame(
        {
            "coin_id": list(coins),
            "symbol": [c[:3].upper() for c in coins],
            "observed_at": naive,
            "partition_hour": naive,
            "price": 100.0,
            "source": "synthetic",
            "ingested_at": naive,
        }
    )


def _result(check_fn, warehouse, *args):
    with warehouse.connect() as conn:
        return check_fn(conn, *args)


WINDOW = (T0, T0 + timedelta(hours=1))


def test_checks_pass_on_good_data(warehouse):
    _write(warehouse, _good_rows())
    with warehouse.connect() as conn:
        results = [
            ingestion.check_schema(conn),
            ingestion.check_prices(conn, *WINDOW),
            ingestion.check_unique(conn, *WINDOW),
            ingestion.check_within_partition(conn, *WINDOW),
            ingestion.check_coverage(conn, *WINDOW, ["bitcoin", "ethereum"]),
            ingestion.check_freshness(conn, *WINDOW, now=T0 + timedelta(hours=1, minutes=5)),
        ]
    assert [r.passed for r in results] == [True] * 6


def _failed_days(result) -> list[str]:
    assert result.metadata["days_failed"].value == len(result.metadata["failed_days"].value.records)
    return [r.data["day"] for r in result.metadata["failed_days"].value.records]


@pytest.mark.parametrize("price", [0.0, -3.0, None, float("nan")])
def test_price_check_fails_on_bad_prices_naming_the_day(warehouse, price):
    rows = _good_rows()
    rows.loc[1, "price"] = price
    _write(warehouse, rows)
    result = _result(ingestion.check_prices, warehouse, *WINDOW)
    assert not result.passed and _failed_days(result) == ["2026-03-01"]
    assert result.metadata["failed_days"].value.records[0].data["bad prices"] == 1


def test_a_check_over_many_days_names_only_the_days_that_failed(warehouse):
    later = T0 + timedelta(days=2)
    bad = _good_rows(hour=later)
    bad.loc[0, "price"] = -1.0
    _write(
        warehouse, pd.concat([_good_rows(), _good_rows(hour=T0 + timedelta(days=1)), bad]), end=T0 + timedelta(days=3)
    )
    result = _result(ingestion.check_prices, warehouse, T0, T0 + timedelta(days=3))
    assert not result.passed and _failed_days(result) == ["2026-03-03"]
    assert result.metadata["days_checked"].value == 3 and "1 of 3 day(s): 2026-03-03" in result.description


def test_unique_check_fails_on_duplicate_coin_hour(warehouse):
    _write(warehouse, pd.concat([_good_rows(), _good_rows(("bitcoin",))]))
    result = _result(ingestion.check_unique, warehouse, *WINDOW)
    assert not result.passed and _failed_days(result) == ["2026-03-01"]


def test_window_check_fails_when_observed_at_leaves_its_hour(warehouse):
    rows = _good_rows()
    rows.loc[0, "observed_at"] = (T0 + timedelta(minutes=75)).replace(tzinfo=None)
    _write(warehouse, rows)
    result = _result(ingestion.check_within_partition, warehouse, *WINDOW)
    assert not result.passed and _failed_days(result) == ["2026-03-01"]


def test_coverage_check_warns_about_missing_coins(warehouse):
    _write(warehouse, _good_rows(("bitcoin",)))
    result = _result(ingestion.check_coverage, warehouse, *WINDOW, ["bitcoin", "ethereum", "solana"])
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.WARN
    [day] = result.metadata["days"].value.records
    assert day.data["coins_with_gaps"] == 2 and day.data["missing_coin_hours"] == 2
    assert result.metadata["coverage"].value == pytest.approx(1 / 3)


def test_freshness_check_fails_for_a_stale_live_source(warehouse):
    _write(warehouse, _good_rows(hour=T0))
    later = (T0 + timedelta(hours=3), T0 + timedelta(hours=4))
    now = later[1] + timedelta(minutes=5)
    with warehouse.connect() as conn:
        assert not ingestion.check_freshness(conn, *later, now=now).passed
        assert ingestion.check_freshness(conn, *later, now=now + timedelta(days=1)) is None  # history: nothing to say


def test_freshness_is_checked_only_where_the_source_is_live():
    from crypto_assets.definitions import defs

    checks = {k.name for k in defs.resolve_assets_def(ingestion.SNAPSHOTS).check_keys}
    assert ingestion.FRESHNESS_CHECK not in checks  # the default deployment replays a synthetic market
    source = subprocess.run(
        [
            sys.executable,
            "-c",
            "from crypto_assets.assets import ingestion as i; print([s.name for s in i._CHECK_SPECS])",
        ],
        env={**__import__("os").environ, "CRYPTO_ASSETS_SOURCE": "coingecko"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert ingestion.FRESHNESS_CHECK in source.stdout


def test_each_partition_of_a_backfill_carries_its_own_facts(warehouse, instance):
    result = materialize(warehouse, instance, tags=range_tags("2026-03-01", "2026-03-03"))
    assert result.success
    stored = warehouse.query(
        "SELECT strftime(partition_hour, '%Y-%m-%d') AS day, count(*) AS n, count(DISTINCT partition_hour) AS hours "
        "FROM raw.market_snapshots GROUP BY day ORDER BY day"
    )
    for asset, rows_of in ((ingestion.SNAPSHOTS, dict(zip(stored["day"], stored["n"], strict=True))),):
        events = {e.partition: e.materialization.metadata for e in result.get_asset_materialization_events()
                  if e.asset_key == asset}  # fmt: skip
        assert set(events) == set(rows_of)
        for day, metadata in events.items():
            assert metadata["dagster/row_count"].value == rows_of[day] == 24 * 20
            assert metadata["hours"].value == 24 and metadata["run/rows"].value == 3 * 24 * 20
            assert day in metadata["latest_hour"].value


def test_schema_check_fails_on_a_changed_table(warehouse):
    with warehouse.connect() as conn:
        conn.execute("ALTER TABLE raw.market_snapshots ALTER price TYPE VARCHAR")
        conn.execute("ALTER TABLE raw.market_snapshots ADD COLUMN surprise INTEGER")
        result = ingestion.check_schema(conn)
    assert not result.passed
    assert "price DOUBLE" in result.metadata["missing_or_wrong_type"].value
    assert "surprise" in result.metadata["unexpected"].value


class DuplicatingSource(SyntheticMarket):
    """A source that delivers every row twice: the blocking check must stop the run."""

    def fetch(self, start, end):
        batch = super().fetch(start, end)
        return SourceBatch(
            pd.concat([batch.snapshots, batch.snapshots.head(3)]), batch.quarantine, batch.ground_truth, batch.stats
        )


def test_failed_blocking_check_records_the_materialization_but_fails_the_step(warehouse, instance):
    @dg.asset(
        deps=[ingestion.SNAPSHOTS], partitions_def=daily_data_partitions, backfill_policy=dg.BackfillPolicy.single_run()
    )
    def downstream_of_snapshots():
        raise AssertionError("must not run after a failed blocking check")

    result = dg.materialize(
        [ingestion.market_snapshots, downstream_of_snapshots],
        instance=instance,
        partition_key="2026-03-01",
        resources={"warehouse": warehouse, "market_source": DuplicatingSource()},
        raise_on_error=False,
    )
    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks[ingestion.UNIQUE_CHECK] is False
    assert instance.get_latest_materialization_event(ingestion.SNAPSHOTS) is not None
    assert not result.get_step_success_events() or all(
        e.step_key != "downstream_of_snapshots" for e in result.get_step_success_events()
    )


def test_deployment_and_source_settings_are_validated(monkeypatch):
    with pytest.raises(SettingsError, match="DAGSTER_DEPLOYMENT"):
        read_settings({"DAGSTER_DEPLOYMENT": "staging"})
    with pytest.raises(SettingsError, match="CRYPTO_ASSETS_SOURCE"):
        build_resources(read_settings({"CRYPTO_ASSETS_SOURCE": "bloomberg"}))
    assert build_resources(read_settings({}))["market_source"].kind == "synthetic"
    assert build_resources(read_settings({"DAGSTER_DEPLOYMENT": "prod"}))["market_source"].kind == "coingecko"
    csv = build_resources(read_settings({"CRYPTO_ASSETS_SOURCE": "csv", "CRYPTO_ASSETS_CSV_PATHS": "a.csv:b"}))
    assert csv["market_source"].kind == "csv" and csv["market_source"].paths == ["a.csv", "b"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@127.0.0.1:3306/dagster", "must name the psycopg2 driver"),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/dagster", "must name the psycopg2 driver"),
        ("not a url", "is not a database URL"),
        ("postgresql+psycopg2://postgres@127.0.0.1:notaport/dagster", "numeric port"),
        ("postgresql+psycopg2://postgres@127.0.0.1:99999/dagster", "not one of 1..65535"),
        ("postgresql+psycopg2://postgres@127.0.0.1:5432", "names no database"),
    ],
)
def test_the_production_instance_url_is_checked_before_anything_runs(monkeypatch, tmp_path, url, message):
    from crypto_assets import instance as instance_setup

    monkeypatch.setenv(instance_setup.PG_URL_ENV, url)
    with pytest.raises(instance_setup.InstanceSetupError, match=message):
        instance_setup.prepare_home(tmp_path / "home", "prod")
    assert not (tmp_path / "home" / "dagster.yaml").exists()


def test_an_unreachable_postgres_is_a_clear_error_with_the_password_hidden(monkeypatch, tmp_path):
    from crypto_assets import instance as instance_setup

    # Port 9 (discard) on loopback: nothing listens there.
    monkeypatch.setenv(instance_setup.PG_URL_ENV, "postgresql+psycopg2://postgres:s3cret-pw@127.0.0.1:9/dagster")
    with pytest.raises(
        instance_setup.InstanceSetupError, match=r"nothing listens at 127\.0\.0\.1:9 \(connection refused\)"
    ) as raised:
        instance_setup.prepare_home(tmp_path / "home", "prod")
    assert "s3cret-pw" not in str(raised.value)


def test_a_database_in_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="warehouse.database: folder .* does not exist"):
        with Warehouse(database=str(tmp_path / "nope" / "x.duckdb")).connect():
            pass


def test_partitions_start_is_validated():
    with pytest.raises(SettingsError, match="CRYPTO_ASSETS_PARTITIONS_START"):
        read_settings({"CRYPTO_ASSETS_PARTITIONS_START": "01/02/2020"})
    assert read_settings({"CRYPTO_ASSETS_PARTITIONS_START": "2020-08-01"}).partitions_start == "2020-08-01"


def test_definitions_validate_and_load_without_heavy_ml_imports():
    root = Path(__file__).resolve().parents[1]
    bin_dir = Path(sys.executable).parent
    validated = subprocess.run(
        [str(bin_dir / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert validated.returncode == 0, validated.stderr[-2000:]
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, crypto_assets.definitions; "
            "print(','.join(m for m in ('sklearn', 'lightgbm', 'evidently', 'arch', 'scipy', 'pandas', 'numpy') "
            "if m in sys.modules))",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() == ""


def test_a_deprecated_api_called_from_our_code_fails_the_tests():
    # pyproject's filterwarnings turns DeprecationWarnings raised from crypto_assets code into errors.
    probe = compile("import warnings\nwarnings.warn('old API', DeprecationWarning)", "probe.py", "exec")
    with pytest.raises(DeprecationWarning, match="old API"):
        exec(probe, {"__name__": "crypto_assets.probe"})
