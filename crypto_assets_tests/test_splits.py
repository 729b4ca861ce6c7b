import json

import dagster as dg

from crypto_assets.assets import splits

DAY = "2026-03-14"


def _split(warehouse, instance, **config):
    return dg.materialize([splits.training_splits], instance=instance, partition_key=DAY, resources={"warehouse": warehouse},
                          run_config={"ops": {"training_splits": {"config": config}}}, raise_on_error=False)


def test_split_windows_embargo_and_checks(prepared_warehouse, instance):
    result = _split(prepared_warehouse, instance, holdout_hours=24, max_history_hours=240, embargo_hours=6)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    parts = prepared_warehouse.query(
        "SELECT part, min(partition_hour) AS first, max(partition_hour) AS last, count(DISTINCT coin_id) AS coins "
        "FROM ml.training_splits WHERE split_id = ? GROUP BY part ORDER BY part", [DAY]
    ).set_index("part")
    assert str(parts.loc["holdout", "first"]) == "2026-03-14 00:00:00" and str(parts.loc["holdout", "last"]) == "2026-03-14 23:00:00"
    assert str(parts.loc["train", "last"]) == "2026-03-13 17:00:00"  # 6 hours of embargo before the holdout
    assert str(parts.loc["train", "first"]) == "2026-03-03 18:00:00"  # 240 hours of history
    assert (parts["coins"] == 20).all()


def test_coins_with_too_few_rows_are_excluded_and_listed(prepared_warehouse, instance):
    with prepared_warehouse.connect() as conn:
        conn.execute("DELETE FROM features.coin_features WHERE coin_id = 'aptos' AND partition_hour >= '2026-03-14 02:00'")
    result = _split(prepared_warehouse, instance, min_snapshots_per_coin=3)
    assert result.success
    metadata = result.asset_materializations_for_node("training_splits")[0].metadata
    assert metadata["excluded_coins"].value == "aptos"
    in_split = prepared_warehouse.query("SELECT count(*) AS n FROM ml.training_splits WHERE split_id = ? AND coin_id = 'aptos'", [DAY])
    assert in_split["n"][0] == 0
    summary = prepared_warehouse.query("SELECT excluded_coins FROM ml.split_summaries WHERE split_id = ?", [DAY])
    assert json.loads(summary["excluded_coins"][0]) == ["aptos"]


def test_rerunning_a_split_replaces_it(prepared_warehouse, instance):
    assert _split(prepared_warehouse, instance, holdout_hours=24).success
    assert _split(prepared_warehouse, instance, holdout_hours=48).success
    counts = prepared_warehouse.query(
        "SELECT part, count(*) AS n FROM ml.training_splits WHERE split_id = ? GROUP BY part ORDER BY part", [DAY]
    )
    assert counts.values.tolist() == [["holdout", 48 * 20], ["train", 336 * 20]]
    assert prepared_warehouse.query("SELECT count(*) AS n FROM ml.split_summaries WHERE split_id = ?", [DAY])["n"][0] == 1


def test_the_embargo_check_fails_when_train_runs_into_the_holdout(prepared_warehouse):
    with prepared_warehouse.connect() as conn:
        conn.execute("DELETE FROM ml.training_splits")
        conn.execute(
            """
            INSERT INTO ml.training_splits VALUES
              ('bad', 'train', 'bitcoin', '2026-03-13 22:00'), ('bad', 'train', 'bitcoin', '2026-03-13 23:00'),
              ('bad', 'holdout', 'bitcoin', '2026-03-14 00:00'), ('bad', 'holdout', 'bitcoin', '2026-03-13 23:00')
            """
        )
        checks = {c.check_name: c.passed for c in splits.split_checks(conn, "bad", splits.SplitConfig())}
    assert checks[splits.NO_OVERLAP_CHECK] is False
    assert checks[splits.EMBARGO_CHECK] is False
    assert checks[splits.MIN_ROWS_CHECK] is False
