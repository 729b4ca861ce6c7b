"""A snapshot of the asset graph, so a structural change shows in review.

The graph (assets with their groups, kinds, partitions, upstream assets with their partition
mappings, checks, pools, backfill policies; jobs with their selections; schedules and sensors) is
compared with ``snapshots/asset_graph.json``. After an intended change, regenerate it with
``UPDATE_SNAPSHOTS=1 bash scripts/test.sh crypto_assets_tests/test_asset_graph.py`` and commit the diff.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def _partitions(partitions_def) -> str | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        # The start date is configuration (CRYPTO_ASSETS_PARTITIONS_START), not structure.
        return f"{partitions_def.cron_schedule} {partitions_def.timezone}, end_offset {partitions_def.end_offset}"
    return type(partitions_def).__name__


def _mapping(mapping) -> str | None:
    if mapping is None:
        return None
    if isinstance(mapping, dg.TimeWindowPartitionMapping):
        return f"window {mapping.start_offset}..{mapping.end_offset}"
    return type(mapping).__name__


def describe(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets_def = node.assets_def
        spec = assets_def.specs_by_key[key]
        deps = {}
        for dep in spec.deps:
            deps[dep.asset_key.to_user_string()] = _mapping(dep.partition_mapping)
        policy = assets_def.backfill_policy
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": ", ".join(sorted(node.kinds)),
            "partitions": _partitions(node.partitions_def),
            "deps": dict(sorted(deps.items())),
            "checks": sorted(
                f"{c.name}{' (blocking)' if c.blocking else ''}"
                for c in assets_def.check_specs
                if c.key.asset_key == key
            ),
            "pool": next(iter(assets_def.op.pools), None) if assets_def.is_executable and assets_def.op.pools else None,
            "backfill": None if policy is None else policy.policy_type.value,
        }
    jobs = {}
    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue
        jobs[job.name] = sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys)
    return {
        "assets": assets,
        "jobs": dict(sorted(jobs.items())),
        "schedules": sorted(s.name for s in defs.schedules or []),
        "sensors": sorted(s.name for s in defs.sensors or []),
    }


def test_the_asset_graph_matches_its_snapshot():
    from crypto_assets.definitions import defs

    current = json.dumps(describe(defs), indent=2, sort_keys=False) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(current)
    expected = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    diff = "".join(difflib.unified_diff(expected.splitlines(True), current.splitlines(True), "snapshot", "code"))
    assert not diff, (
        "the asset graph changed; if intended, regenerate the snapshot with "
        f"UPDATE_SNAPSHOTS=1 bash scripts/test.sh crypto_assets_tests/test_asset_graph.py\n{diff}"
    )
