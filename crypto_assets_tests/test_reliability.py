"""Faults and hostile input: killed processes, injection attempts, bad config, leaked secrets."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from crypto_assets import registry
from crypto_assets.assets import ingestion
from crypto_assets.assets.splits import SplitConfig
from crypto_assets.market.sources import CoinGeckoMarket, CsvReplayMarket, SyntheticMarket
from crypto_assets.ml.gates import GateConfig
from crypto_assets.ml.volatility_model import VolatilityModelConfig

from .fake_coingecko import FakeCoinGecko

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-03-01"


def _child(code: str, database: Path, wait_for: str | None = None, timeout: float = 120) -> subprocess.Popen | str:
    """Run ``code`` in a fresh Python process; with ``wait_for``, return it once it prints that line."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), str(database)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if wait_for is None:
        out, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err[-3000:]
        return out
    for line in process.stdout:
        if line.strip() == wait_for:
            return process
    raise AssertionError(f"child ended before printing {wait_for!r}: {process.stderr.read()[-3000:]}")


WRITE_PARTITION = """
    import sys, time
    from datetime import datetime, timezone
    from crypto_assets.market.synthetic import synthetic_window
    from crypto_assets.market.universe import default_universe
    from crypto_assets.warehouse import Warehouse, replace_window, transaction
    seed, pause = int(sys.argv[2]), sys.argv[3] == "pause"
    start, end = datetime(2026, 3, 1, 5, tzinfo=timezone.utc), datetime(2026, 3, 1, 6, tzinfo=timezone.utc)
    batch = synthetic_window(default_universe(20), seed, start, end, 0.0)
    with Warehouse(database=sys.argv[1]).connect() as conn:
        with transaction(conn):
            replace_window(conn, "raw.market_snapshots", batch.snapshots, column="partition_hour", start=start, end=end)
            if pause:
                print("WRITTEN", flush=True)
                time.sleep(120)
"""


def _write_partition(database: Path, seed: int, pause: bool):
    code = WRITE_PARTITION.replace("sys.argv[2]", repr(str(seed))).replace(
        "sys.argv[3]", repr("pause" if pause else "go")
    )
    return _child(code, database, wait_for="WRITTEN" if pause else None)


def test_sigkill_in_the_middle_of_a_partition_write_keeps_the_old_partition(tmp_path):
    database = tmp_path / "warehouse.duckdb"
    _write_partition(database, seed=1, pause=False)
    from crypto_assets.warehouse import Warehouse

    warehouse = Warehouse(database=str(database))
    old = warehouse.query("SELECT coin_id, price FROM raw.market_snapshots ORDER BY coin_id")
    child = _write_partition(database, seed=2, pause=True)  # deleted and re-inserted, not committed
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    after_kill = warehouse.query("SELECT coin_id, price FROM raw.market_snapshots ORDER BY coin_id")
    pd.testing.assert_frame_equal(old, after_kill)  # the old partition, whole
    _write_partition(database, seed=2, pause=False)  # re-running succeeds
    new = warehouse.query("SELECT coin_id, price FROM raw.market_snapshots ORDER BY coin_id")
    assert len(new) == 20 and not new["price"].equals(old["price"])


INTERRUPTED_PROMOTION = """
    import sys, time
    from crypto_assets import registry
    from crypto_assets.warehouse import Warehouse

    class PauseAfterAliasMove:
        # Delegates to the real connection; stops for good right after the alias moved.
        def __init__(self, conn):
            self.conn = conn
        def execute(self, sql, *args):
            result = self.conn.execute(sql, *args)
            if "INSERT INTO registry.aliases" in sql or "UPDATE registry.aliases" in sql:
                print("ALIAS_MOVED", flush=True)
                time.sleep(120)
            return result

    with Warehouse(database=sys.argv[1]).connect() as conn:
        registry.record_decision(PauseAfterAliasMove(conn), model_name="m", to_version="v2", expected_from="v1",
                                 outcome="promoted", trigger="manual", reason="interrupted", gate_results={},
                                 run_id=None)
"""


def test_a_promotion_killed_midway_leaves_alias_and_events_consistent(warehouse):
    with warehouse.connect() as conn:
        for i in range(2):
            registry.register_version(
                conn,
                model_name="m",
                model={},
                features=[],
                params={"i": i},
                lineage=registry.Lineage(
                    split_id="s",
                    feature_spec_version="x",
                    train_rows=1,
                    evaluation_rows=1,
                ),
                metrics={},
                run_id=None,
            )
        registry.record_decision(
            conn,
            model_name="m",
            to_version="v1",
            expected_from=None,
            outcome="promoted",
            trigger="manual",
            reason="first",
            gate_results={},
            run_id=None,
        )
    child = _child(INTERRUPTED_PROMOTION, Path(warehouse.database), wait_for="ALIAS_MOVED")
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    with warehouse.connect() as conn:
        assert registry.champion(conn, "m").version_id == "v1"
        events = registry.promotion_events(conn, "m")
        assert [e["to_version"] for e in events] == ["v1"]
        # and the same promotion, not interrupted, goes through
        registry.record_decision(
            conn,
            model_name="m",
            to_version="v2",
            expected_from="v1",
            outcome="promoted",
            trigger="manual",
            reason="again",
            gate_results={},
            run_id=None,
        )
        assert registry.champion(conn, "m").version_id == "v2"
        assert events[-1]["to_version"] == "v1" and len(registry.promotion_events(conn, "m")) == 2


HOSTILE = [
    "x'; DROP TABLE raw.market_snapshots; --",
    'quote"double',
    "semi;colon",
    "SELECT * FROM registry.aliases",
    "ünï-cødé-币",
]


def test_hostile_coin_ids_and_symbols_are_stored_literally(warehouse, instance, tmp_path):
    rows = pd.DataFrame(
        {
            "coin_id": HOSTILE,
            "symbol": [s[:12] for s in HOSTILE],
            "observed_at": "2026-03-01T05:00:00Z",
            "price": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    bad = pd.DataFrame(
        {
            "coin_id": ["'); DELETE FROM raw.market_quarantine; --"],
            "symbol": ["EVIL"],
            "observed_at": ["2026-03-01T05:00:00Z"],
            "price": ["1; DROP TABLE x"],
        }
    )
    path = tmp_path / "hostile.csv"
    pd.concat([rows, bad]).to_csv(path, index=False)
    source = CsvReplayMarket(paths=[str(path)], inject_anomalies=False)
    result = dg.materialize(
        [ingestion.market_snapshots],
        instance=instance,
        partition_key=DAY,
        resources={"warehouse": warehouse, "market_source": source},
        raise_on_error=False,
    )
    assert result.success
    stored = warehouse.query("SELECT coin_id, symbol, price FROM raw.market_snapshots ORDER BY price")
    assert stored["coin_id"].tolist() == HOSTILE
    quarantined = warehouse.query("SELECT coin_id, reason, raw_record FROM raw.market_quarantine")
    assert quarantined["coin_id"].tolist() == ["'); DELETE FROM raw.market_quarantine; --"]
    assert "DROP TABLE x" in quarantined["raw_record"].iloc[0]
    with warehouse.connect() as conn:
        for name in HOSTILE:
            registry.register_version(
                conn,
                model_name=name,
                model={},
                features=[name],
                params={"p": name},
                lineage=registry.Lineage(
                    split_id=name,
                    feature_spec_version="x",
                    train_rows=1,
                    evaluation_rows=1,
                ),
                metrics={},
                run_id=None,
            )
            assert registry.resolve(conn, name, "latest").params == {"p": name}
        with pytest.raises(registry.RegistryError, match="not valid"):
            registry.resolve(conn, HOSTILE[0], "v1; DELETE FROM registry.model_versions")
        assert conn.execute("SELECT count(*) FROM registry.model_versions").fetchone()[0] == len(HOSTILE)


def test_an_unreadable_csv_file_is_said_in_the_run_and_the_others_land(warehouse, instance, tmp_path):
    good = pd.DataFrame(
        {
            "coin_id": ["bitcoin"] * 3,
            "symbol": ["BTC"] * 3,
            "price": [1.0, 2.0, 3.0],
            "observed_at": [f"2026-03-01T0{h}:00:00Z" for h in range(3)],
        }
    )
    good.to_csv(tmp_path / "good.csv", index=False)
    (tmp_path / "export.csv").write_text("Date,Open,High,Low,Close\n2026-03-01 01-AM,1,2,0.5,1.5\n")  # no pair anywhere
    source = CsvReplayMarket(paths=[str(tmp_path)], inject_anomalies=False)
    result = dg.materialize(
        [ingestion.market_snapshots],
        instance=instance,
        partition_key=DAY,
        resources={"warehouse": warehouse, "market_source": source},
        raise_on_error=False,
    )
    assert result.success
    assert warehouse.query("SELECT count(*) AS n FROM raw.market_snapshots")["n"].iloc[0] == 3
    metadata = result.asset_materializations_for_node("market_snapshots")[0].metadata
    assert metadata["run/source_files_unreadable"].value == 1
    assert "export.csv: unreadable" in metadata["source_warnings"].value
    warnings = [e.message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert any("export.csv: unreadable" in m and "does not name the pair" in m for m in warnings), warnings


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: SplitConfig(evaluation_days=0), "evaluation_days"),
        (lambda: SplitConfig(evaluation_days=400), "evaluation_days"),
        (lambda: VolatilityModelConfig(train_days=1), "train_days"),
        (lambda: GateConfig(min_positives=0), "min_positives"),
        (lambda: SyntheticMarket(regime_shift_at="yesterday"), "regime_shift_at"),
        (lambda: SplitConfig(embargo_hours=2), "embargo_hours"),
        (lambda: GateConfig(min_pr_auc=1.5), "min_pr_auc"),
        (lambda: CoinGeckoMarket(requests_per_minute=0), "requests_per_minute"),
        (lambda: CsvReplayMarket(paths=["x.csv"], anomaly_rate=-0.1), "anomaly_rate"),
    ],
)
def test_out_of_range_config_fails_fast_naming_the_field(build, field):
    with pytest.raises(Exception) as raised:
        build()
    assert field in str(raised.value)


def test_an_unwritable_database_path_names_the_setting():
    from crypto_assets.warehouse import Warehouse

    with pytest.raises(ValueError, match="warehouse.database: cannot open"):
        with Warehouse(database="/sys/kernel/crypto_assets.duckdb").connect():
            pass


SECRET = "CG-SECRET-reliability-987"


def _everything_said(instance: dg.DagsterInstance, result) -> str:
    """Every log line, event, metadata value and error of a run, as text."""
    texts = [str(entry) for entry in instance.all_logs(result.run_id)]
    texts += [str(e) for e in result.all_events]
    return "\n".join(texts)


def test_the_api_key_never_appears_in_logs_metadata_or_errors(warehouse, instance, monkeypatch, capfd):
    monkeypatch.setenv("COINGECKO_API_KEY", SECRET)

    def source(base_url: str) -> CoinGeckoMarket:
        return CoinGeckoMarket(
            base_url=base_url,
            api_key=dg.EnvVar("COINGECKO_API_KEY"),
            coin_ids=["bitcoin", "ethereum"],
            requests_per_minute=6000,
            max_attempts=1,
        )

    with FakeCoinGecko(required_key=("x-cg-demo-api-key", SECRET)) as server:
        ok = dg.materialize(
            [ingestion.market_snapshots],
            instance=instance,
            partition_key=DAY,
            resources={"warehouse": warehouse, "market_source": source(server.base_url)},
            raise_on_error=False,
        )
        assert ok.success
        assert server.requests[0].headers.get("x-cg-demo-api-key") == SECRET  # the key was really used
    with FakeCoinGecko(required_key=("x-cg-demo-api-key", "a-different-key")) as server:
        denied = dg.materialize(
            [ingestion.market_snapshots],
            instance=instance,
            partition_key=DAY,
            resources={"warehouse": warehouse, "market_source": source(server.base_url)},
            raise_on_error=False,
        )
        assert not denied.success
    error = denied.failure_data_for_node("market_snapshots").error
    assert "COINGECKO_API_KEY" in str(error)  # the error says which setting to fix...
    captured = capfd.readouterr()
    everything = "\n".join(
        [_everything_said(instance, ok), _everything_said(instance, denied), str(error), captured.out, captured.err]
    )
    assert SECRET not in everything  # ...but never the key itself
    snapshot = dg.Definitions(
        assets=[ingestion.market_snapshots],
        resources={"warehouse": warehouse, "market_source": source("http://127.0.0.1:9")},
    )
    assert SECRET not in repr(snapshot.resources)
