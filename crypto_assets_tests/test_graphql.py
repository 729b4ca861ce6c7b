"""End to end through Dagster's GraphQL API, against a real ``dagster dev`` (see ``e2e.py``).

Launches ``hourly_ingest_and_score_job`` for one day with ``DagsterGraphQLClient``, waits for it,
then reads back what that run recorded: the ``market_snapshots`` materialization of the day and
its six quality checks, and the gate checks of the latest ``anomaly_detector_evaluation``.
"""

from __future__ import annotations

import time

import pytest

pytest.register_assert_rewrite("crypto_assets_tests.e2e")  # it is also loaded as a plugin, below
from crypto_assets_tests.e2e import DagsterServer, yesterday  # noqa: E402

pytest_plugins = ["crypto_assets_tests.e2e"]

# dagster-graphql's client still calls gql with arguments gql has deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:Using variable_values and operation_name:DeprecationWarning")

dagster_graphql = pytest.importorskip(
    "dagster_graphql", reason="dagster-graphql is not installed (pip install -e '.[dev]')"
)

RUN_TIMEOUT_S = 240.0
COINS = 20  # the synthetic market's default universe
HOURS = 24
SNAPSHOT_CHECKS = {
    "snapshot_schema",
    "valid_prices",
    "unique_coin_hour",
    "observed_within_partition",
    "universe_coverage",
}  # no live_freshness: the synthetic source is not live, so the check does not exist here
GATES = {
    "meets_metric_floor",
    "beats_baseline",
    "beats_champion",
    "sane_flag_rate",
    "no_nan_scores",
    "artifact_verified",
}

METADATA_FIELDS = """
  label
  __typename
  ... on IntMetadataEntry { intValue intRepr }
  ... on FloatMetadataEntry { floatValue }
  ... on TextMetadataEntry { text }
  ... on BoolMetadataEntry { boolValue }
"""

MATERIALIZATIONS_QUERY = (
    """
query Materializations($path: [String!]!, $partition: String!) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset {
      assetMaterializations(partitions: [$partition], limit: 10) {
        runId
        partition
        timestamp
        metadataEntries { """
    + METADATA_FIELDS
    + """ }
      }
    }
  }
}
"""
)

CHECK_EXECUTIONS_QUERY = (
    """
query CheckExecutions($path: [String!]!, $check: String!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $check, limit: 10) {
    runId
    status
    partition
    run { jobName tags { key value } }
    evaluation {
      checkName
      success
      severity
      partition
      metadataEntries { """
    + METADATA_FIELDS
    + """ }
    }
  }
}
"""
)


def metadata(entries: list[dict]) -> dict:
    """GraphQL metadata entries as {label: python value}."""
    values = {}
    for entry in entries:
        kind = entry["__typename"]
        if kind == "IntMetadataEntry":
            values[entry["label"]] = entry["intValue"] if entry["intValue"] is not None else int(entry["intRepr"])
        elif kind == "FloatMetadataEntry":
            values[entry["label"]] = entry["floatValue"]
        elif kind == "TextMetadataEntry":
            values[entry["label"]] = entry["text"]
        elif kind == "BoolMetadataEntry":
            values[entry["label"]] = entry["boolValue"]
        else:
            values[entry["label"]] = kind
    return values


def evaluated_executions(server: DagsterServer, asset: str, check: str) -> list[dict]:
    """The check's recent executions that recorded an evaluation, newest first.

    The checks are unpartitioned specs on partitioned assets: Dagster 1.13 records each run's
    planned execution under the run's partition (shown as SKIPPED once the run ends) and the
    evaluation itself without a partition, so executions are matched by run, not by partition.
    """
    executions = server.graphql(CHECK_EXECUTIONS_QUERY, {"path": [asset], "check": check})["assetCheckExecutions"]
    return [e for e in executions if e["evaluation"] is not None]


def test_launch_hourly_job_and_read_results_over_graphql(dagster_server: DagsterServer):
    """Submit one day of the hourly job, wait for SUCCESS, then query its materialization and checks."""
    client = dagster_graphql.DagsterGraphQLClient("127.0.0.1", port_number=dagster_server.port, timeout=60)
    # Yesterday: inside the window the quickstart materialized, so features have their history and
    # the day is scored by the champions (re-materializing a partition replaces its rows).
    partition = yesterday(dagster_server.populated[1])

    started = time.monotonic()
    run_id = client.submit_job_execution("hourly_ingest_and_score_job", tags={"dagster/partition": partition})
    deadline = started + RUN_TIMEOUT_S
    status = client.get_run_status(run_id)
    while status.value not in ("SUCCESS", "FAILURE", "CANCELED") and time.monotonic() < deadline:
        time.sleep(1.0)
        status = client.get_run_status(run_id)
    print(f"\n[graphql] run {run_id} for {partition}: {status.value} after {time.monotonic() - started:.0f}s")
    assert status.value == "SUCCESS", f"run {run_id} ended {status.value}\n{dagster_server.logs()}"

    # The materialization of market_snapshots for that day, recorded by this run.
    data = dagster_server.graphql(MATERIALIZATIONS_QUERY, {"path": ["market_snapshots"], "partition": partition})
    asset = data["assetOrError"]
    assert asset["__typename"] == "Asset", asset
    ours = [m for m in asset["assetMaterializations"] if m["runId"] == run_id]
    assert len(ours) == 1, (
        f"expected one materialization of {partition} by run {run_id}: {asset['assetMaterializations']}"
    )
    assert ours[0]["partition"] == partition
    values = metadata(ours[0]["metadataEntries"])
    assert values["dagster/row_count"] == COINS * HOURS
    assert values["coins"] == COINS
    assert values["hours"] == HOURS
    assert values["source"] == "synthetic"
    # The quickstart materialized the same day before: the run added a newer materialization.
    assert len(asset["assetMaterializations"]) >= 2

    # Its six quality checks were evaluated in the same run, and passed.
    for check in sorted(SNAPSHOT_CHECKS):
        executions = evaluated_executions(dagster_server, "market_snapshots", check)
        execution = next((e for e in executions if e["runId"] == run_id), None)
        assert execution is not None, f"{check}: no evaluation in run {run_id}: {executions}"
        assert execution["status"] == "SUCCEEDED", f"{check}: {execution}"
        assert execution["evaluation"]["checkName"] == check
        assert execution["evaluation"]["success"] is True
        check_values = metadata(execution["evaluation"]["metadataEntries"])
        if check == "universe_coverage":
            assert check_values["coverage"] == pytest.approx(1.0)
            assert check_values["expected_coins"] == COINS
            assert check_values["days_with_gaps"] == 0
        if check == "valid_prices":
            assert check_values["days_failed"] == 0 and check_values["days_checked"] == 1

    # coin_features for the day came from the same run.
    data = dagster_server.graphql(MATERIALIZATIONS_QUERY, {"path": ["coin_features"], "partition": partition})
    features = [m for m in data["assetOrError"]["assetMaterializations"] if m["runId"] == run_id]
    assert len(features) == 1 and metadata(features[0]["metadataEntries"])["dagster/row_count"] == COINS * HOURS

    # The quality gates of yesterday's anomaly detector evaluation (from the quickstart's training run):
    # all six recorded, each with a definite outcome, the metric floor with its numbers.
    days = dagster_server.training_days()
    outcomes = {}
    for gate in sorted(GATES):
        executions = evaluated_executions(dagster_server, "anomaly_detector_evaluation", gate)
        assert executions, f"gate {gate}: never evaluated"
        latest = executions[0]
        assert latest["status"] in ("SUCCEEDED", "FAILED"), f"gate {gate}: {latest}"
        assert latest["evaluation"]["checkName"] == gate
        assert latest["evaluation"]["severity"] == "ERROR"
        assert latest["evaluation"]["success"] is (latest["status"] == "SUCCEEDED")
        run_tags = {t["key"]: t["value"] for t in latest["run"]["tags"]}
        assert latest["run"]["jobName"] == "daily_training_job"
        assert run_tags.get("dagster/partition") in days, f"gate {gate} was evaluated for {run_tags}, not {days}"
        outcomes[gate] = latest["status"]
        if gate == "meets_metric_floor":
            numbers = metadata(latest["evaluation"]["metadataEntries"])
            floor = float(numbers["rule"].split(">= ")[1].split(" ")[0])  # the rule says its threshold in words
            assert 0.0 < floor < 1.0 and "floor" not in numbers  # a constant is no number to plot
            pr_auc = numbers["candidate_pr_auc"]  # None or NaN when the holdout has no anomaly
            if pr_auc is None or pr_auc != pr_auc:
                assert latest["status"] == "FAILED"
            else:
                assert 0.0 <= pr_auc <= 1.0
                assert (pr_auc >= floor) is (latest["status"] == "SUCCEEDED")
    print(f"[graphql] anomaly_detector_evaluation {'/'.join(sorted(days))} gates: {outcomes}")


RUNS_QUERY = """
query Runs($job: String!) {
  runsOrError(filter: {pipelineName: $job}) {
    ... on Runs { results { runId status tags { key value } repositoryOrigin { repositoryLocationName } } }
  }
}
"""


def test_every_quickstart_run_succeeded_with_its_jobs_origin(dagster_server: DagsterServer):
    """As the UI's job pages and Overview list them: by job and code location, with their trigger."""
    by_job = {}
    for job in ("hourly_ingest_and_score_job", "hourly_labels_job", "daily_training_job", "champion_gate_job"):
        runs = dagster_server.graphql(RUNS_QUERY, {"job": job})["runsOrError"]["results"]
        assert runs, f"no run of {job}"
        for run in runs:
            assert run["repositoryOrigin"]["repositoryLocationName"] == "crypto_assets.definitions", run
        by_job[job] = runs
    assert all(r["status"] in ("SUCCESS", "STARTED", "QUEUED") for runs in by_job.values() for r in runs)
    gate_runs = by_job["champion_gate_job"]
    assert {t["value"] for r in gate_runs for t in r["tags"] if t["key"] == "dagster/sensor_name"} == {
        "champion_promotion_sensor"
    }
    assert all(r["status"] == "SUCCESS" for r in by_job["daily_training_job"])  # a refusal is not a failure
