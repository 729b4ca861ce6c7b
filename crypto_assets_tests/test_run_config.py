"""A run's whole config is checked against its config classes' ranges before any step writes.

Dagster checks types at launch; the ranges (pydantic ``Field(ge=..., le=...)``) used to be checked
only when each step built its config, so one bad candidate's value failed that step after the other
candidate had trained and registered a version (crypto_assets/config_validation.py).
"""

import dagster as dg
import pytest

from crypto_assets.config_validation import RunConfigError, check_run_config
from crypto_assets.market.sources import SyntheticMarket

from .conftest import PREPARED_SPLITS, resources_for

TRAINING_DAY = PREPARED_SPLITS[-1]
BAD_VALUES = [
    ("anomaly_detector_candidate", "train_days", -5, "2 <= train_days <= 120"),
    ("anomaly_detector_candidate", "train_days", 0, "2 <= train_days <= 120"),
    ("volatility_model_candidate", "train_days", 10**12, "2 <= train_days <= 120"),
    ("volatility_model_candidate", "n_estimators", 10**9, "10 <= n_estimators <= 10000"),
    ("feature_drift", "reference_days", 0, "1 <= reference_days <= 90"),
]


def _table_counts(warehouse) -> dict[str, int]:
    tables = warehouse.query(
        "SELECT table_schema || '.' || table_name AS name FROM information_schema.tables "
        "WHERE table_schema IN ('raw', 'features', 'ml', 'registry', 'serving')"
    )["name"]
    return {name: int(warehouse.query(f"SELECT count(*) AS n FROM {name}")["n"].iloc[0]) for name in tables}


def _errors(result) -> str:
    texts = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            texts.append(error.message)
            error = error.cause
    return "\n".join(texts)


@pytest.mark.parametrize(("op", "field", "value", "allowed"), BAD_VALUES)
def test_a_bad_value_fails_the_training_run_before_anything_is_written(
    prepared_warehouse, instance, op, field, value, allowed
):
    from crypto_assets.assets import asset_modules
    from crypto_assets.jobs import daily_training_job

    job = dg.Definitions(
        assets=dg.load_assets_from_modules(asset_modules()),
        jobs=[daily_training_job],
        resources=resources_for(prepared_warehouse, market_source=SyntheticMarket()),
        executor=dg.in_process_executor,
    ).resolve_job_def(daily_training_job.name)
    before = _table_counts(prepared_warehouse)
    result = job.execute_in_process(
        run_config={"ops": {op: {"config": {field: value}}}},
        partition_key=TRAINING_DAY,
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS]
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]
    lines = [line for line in _errors(result).splitlines() if f"ops.{op}.config.{field} = {value}" in line]
    assert lines and f"allowed {allowed}" in lines[0], _errors(result)
    after = _table_counts(prepared_warehouse)
    assert after == before  # no model version, no split, no drift row, nothing
    assert after["registry.model_versions"] == before["registry.model_versions"]


def test_every_problem_of_a_run_is_named_in_one_line():
    with pytest.raises(RunConfigError) as raised:
        check_run_config(
            {
                "ops": {
                    "anomaly_detector_candidate": {"config": {"train_days": -5}},
                    "feature_drift": {"config": {"reference_days": 0, "per_feature_thresholds": {"nope": 0.1}}},
                    "model_champions": {"config": {"model_name": "nope"}},
                }
            },
            "daily_training_job",
        )
    message = str(raised.value)
    assert "\n" not in message and "daily_training_job" in message
    assert "ops.anomaly_detector_candidate.config.train_days = -5: allowed 2 <= train_days <= 120" in message
    assert "ops.feature_drift.config.reference_days = 0: allowed 1 <= reference_days <= 90" in message
    assert "ops.model_champions.config.model_name" in message


def test_good_config_and_no_config_pass():
    check_run_config(None)
    check_run_config({"ops": {"anomaly_detector_candidate": {"config": {"train_days": 10}}}})
    check_run_config({"ops": {"someone_elses_op": {"config": {"x": -1}}}})  # not ours: Dagster checked its schema


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Dagster's own, creating the in-process code location
def test_the_quickstart_refuses_a_bad_run_config_before_the_run_exists(instance):
    from crypto_assets.quickstart import Launcher

    launcher = Launcher(instance)
    with pytest.raises(
        SystemExit, match=r"ops\.feature_drift\.config\.reference_days = 0: allowed 1 <= reference_days"
    ):
        launcher.run(
            "daily_training_job",
            TRAINING_DAY,
            tags={"dagster/partition": TRAINING_DAY},
            run_config={"ops": {"feature_drift": {"config": {"reference_days": 0}}}},
        )
    assert instance.get_runs() == []
