"""Daily splits: the evaluation window, excluded coins, re-runs, and what the checks say."""

import json

import dagster as dg

from crypto_assets.assets import splits

DAY = "2026-03-14"


def _split(warehouse, instance, **config):
    return dg.materialize(
        [splits.training_splits],
        instance=instance,
        partition_key=DAY,
        resources={"warehouse": warehouse},
        run_config={"ops": {"training_splits": {"config": config}}},
        raise_on_error=False,
    )


def test_the_window_is_the_evaluation_days_ending_with_the_split_day(prepared_warehouse, instance):
    result = _split(prepared_warehouse, instance, evaluation_days=7)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    summary = prepared_warehouse.query("SELECT * FROM ml.split_summaries WHERE split_id = ?", [DAY]).iloc[0]
    assert (
        str(summary["evaluation_start"]) == "2026-03-08 00:00:00"
        and str(summary["evaluation_end"]) == "2026-03-15 00:00:00"
    )
    rows = prepared_warehouse.query(
        "SELECT count(*) AS n, count(DISTINCT coin_id) AS coins, count(*) FILTER (WHERE l.volatility_spike) AS spikes, "
        "count(l.volatility_spike) AS labeled "
        "FROM features.coin_features f LEFT JOIN features.coin_labels l USING (coin_id, partition_hour) "
        "WHERE partition_hour >= '2026-03-08' AND partition_hour < '2026-03-15'"
    ).iloc[0]
    assert (summary["evaluation_rows"], summary["coins"]) == (rows["n"], rows["coins"]) == (7 * 24 * 20, 20)
    assert summary["spike_rate"] == rows["spikes"] / rows["labeled"]
    assert summary["anomaly_rows"] > 0 and summary["embargo_hours"] == 6


def test_coins_with_too_few_hours_are_excluded_and_listed(prepared_warehouse, instance):
    with prepared_warehouse.connect() as conn:
        conn.execute(
            "DELETE FROM features.coin_features WHERE coin_id = 'aptos' AND partition_hour >= '2026-03-09 02:00'"
        )
    result = _split(prepared_warehouse, instance, min_coin_hours=30)
    assert result.success
    metadata = result.asset_materializations_for_node("training_splits")[0].metadata
    assert metadata["excluded_coins"].value == "aptos" and metadata["coins"].value == 19
    summary = prepared_warehouse.query(
        "SELECT excluded_coins, evaluation_rows FROM ml.split_summaries WHERE split_id = ?", [DAY]
    )
    assert json.loads(summary["excluded_coins"][0]) == ["aptos"]
    assert summary["evaluation_rows"][0] == 7 * 24 * 19


def test_rerunning_a_split_replaces_it(prepared_warehouse, instance):
    assert _split(prepared_warehouse, instance, evaluation_days=7).success
    assert _split(prepared_warehouse, instance, evaluation_days=3).success
    summaries = prepared_warehouse.query(
        "SELECT evaluation_start, evaluation_rows FROM ml.split_summaries WHERE split_id = ?", [DAY]
    )
    assert len(summaries) == 1
    assert (
        str(summaries["evaluation_start"][0]) == "2026-03-12 00:00:00"
        and summaries["evaluation_rows"][0] == 3 * 24 * 20
    )


def test_too_few_rows_fail_the_blocking_check(prepared_warehouse, instance):
    result = _split(prepared_warehouse, instance, min_evaluation_rows=10_000)
    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks[splits.MIN_ROWS_CHECK].passed is False
    assert checks[splits.MIN_ROWS_CHECK].metadata["evaluation_rows"].value == 7 * 24 * 20


def test_an_embargo_shorter_than_the_label_horizon_is_refused_before_the_run():
    import pytest

    with pytest.raises(Exception, match="embargo_hours"):
        splits.SplitConfig(embargo_hours=2)
