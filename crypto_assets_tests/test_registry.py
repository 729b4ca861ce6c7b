import pickle
import threading
import uuid
from pathlib import Path

import pytest

from crypto_assets import registry


def _register(conn, name="m", payload=None, split="2026-03-15", frame=None):
    """A version trained on a frame of its own (distinct inputs make distinct versions)."""
    return _register_with_new(conn, name, payload, split, frame or uuid.uuid4().hex)[0]


def _register_with_new(conn, name, payload, split, frame):
    return registry.register_version(
        conn,
        model_name=name,
        model=payload if payload is not None else {"weights": [1, 2, 3]},
        features=["a", "b"],
        params={"alpha": 0.5},
        lineage=registry.Lineage(
            split_id=split,
            feature_spec_version="spec1",
            training_frame_sha256=frame,
            train_rows=10,
            evaluation_rows=5,
        ),
        metrics={"pr_auc": 0.7},
        run_id="run-1",
    )


def test_round_trip_keeps_artifact_and_lineage(warehouse):
    with warehouse.connect() as conn:
        v1 = _register(conn, payload={"w": 1})
        v2 = _register(conn, payload={"w": 2})
        assert (v1.version_id, v2.version_id) == ("v1", "v2")
        loaded = registry.resolve(conn, "m", "v1")
        assert registry.load_artifact(conn, loaded) == {"w": 1}
        assert loaded.params == {"alpha": 0.5} and loaded.features == ["a", "b"]
        assert loaded.metrics == {"pr_auc": 0.7} and loaded.split_id == "2026-03-15" and loaded.run_id == "run-1"
        assert loaded.artifact_sha256 == registry.sha256(pickle.dumps({"w": 1}, protocol=pickle.HIGHEST_PROTOCOL))


def test_the_same_inputs_are_the_same_version(warehouse):
    with warehouse.connect() as conn:
        first, new = _register_with_new(conn, "m", {"w": 1}, "2026-03-15", "frame-a")
        again, again_new = _register_with_new(conn, "m", {"w": 1}, "2026-03-15", "frame-a")
        assert new and not again_new and again.version_id == first.version_id == "v1"
        # other bytes from the same inputs (a non-deterministic fit): the registered artifact is kept
        drifted, _ = _register_with_new(conn, "m", {"w": 2}, "2026-03-15", "frame-a")
        assert drifted.version_id == "v1" and registry.load_artifact(conn, drifted) == {"w": 1}
        other_rows, other_new = _register_with_new(conn, "m", {"w": 1}, "2026-03-15", "frame-b")
        other_day, day_new = _register_with_new(conn, "m", {"w": 1}, "2026-03-16", "frame-a")
        assert (other_rows.version_id, other_new, other_day.version_id, day_new) == ("v2", True, "v3", True)
        assert conn.execute("SELECT count(*) FROM registry.model_versions").fetchone()[0] == 3


def test_version_specifiers_resolve(warehouse):
    with warehouse.connect() as conn:
        for _ in range(3):
            _register(conn)
        assert registry.resolve(conn, "m", "latest").version_id == "v3"
        assert registry.resolve(conn, "m", "latest-0").version_id == "v3"
        assert registry.resolve(conn, "m", "latest-2").version_id == "v1"
        assert registry.resolve(conn, "m", "v2").version_id == "v2"
        assert registry.resolve(conn, "m", " 2 ").version_id == "v2"
        registry.record_decision(
            conn,
            model_name="m",
            to_version="v2",
            expected_from=None,
            outcome="promoted",
            trigger="manual",
            reason="test",
            gate_results={},
            run_id=None,
        )
        assert registry.resolve(conn, "m", "champion").version_id == "v2"


@pytest.mark.parametrize(
    ("specifier", "message"),
    [
        ("latest-3", "out of range"),
        ("v9", "has no version 'v9'"),
        ("best", "not valid"),
        ("latest-x", "not valid"),
        ("", "not valid"),
        ("champion", "no champion yet"),
    ],
)
def test_bad_specifiers_are_clear_errors(warehouse, specifier, message):
    with warehouse.connect() as conn:
        for _ in range(3):
            _register(conn)
        with pytest.raises(registry.RegistryError, match=message):
            registry.resolve(conn, "m", specifier)


def test_unknown_model_is_a_clear_error(warehouse):
    with warehouse.connect() as conn, pytest.raises(registry.RegistryError, match="'nope' has no versions"):
        registry.resolve(conn, "nope", "latest")


class _Exploit:
    """Unpickling this would create a file: proof of code execution."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_tampered_artifact_is_refused_before_unpickling(warehouse, tmp_path):
    marker = tmp_path / "pwned"
    with warehouse.connect() as conn:
        version = _register(conn)
        evil = pickle.dumps(_Exploit(str(marker)))
        conn.execute("UPDATE registry.model_versions SET artifact = ? WHERE version_id = 'v1'", [evil])
        assert not registry.verify_artifact(conn, version)
        with pytest.raises(registry.ArtifactIntegrityError, match="refusing to unpickle"):
            registry.load_artifact(conn, version)
    assert not marker.exists()


def test_decisions_are_append_only_and_consistent_with_the_alias(warehouse):
    with warehouse.connect() as conn:
        for _ in range(3):
            _register(conn)
        args = {"model_name": "m", "trigger": "manual", "gate_results": {}, "run_id": None}
        first = registry.record_decision(
            conn, to_version="v1", expected_from=None, outcome="promoted", reason="first", **args
        )
        registry.record_decision(conn, to_version=None, expected_from="v1", outcome="refused", reason="worse", **args)
        registry.record_decision(conn, to_version="v3", expected_from="v1", outcome="promoted", reason="better", **args)
        events = registry.promotion_events(conn, "m")
        assert [(e["from_version"], e["to_version"], e["outcome"]) for e in events] == [
            (None, "v1", "promoted"),
            ("v1", "v1", "refused"),
            ("v1", "v3", "promoted"),
        ]
        assert events[0]["event_id"] == first["event_id"] and events[0]["reason"] == "first"
        assert registry.champion(conn, "m").version_id == "v3"
        with pytest.raises(ValueError, match="reason"):
            registry.record_decision(conn, to_version="v2", expected_from="v3", outcome="promoted", reason="  ", **args)


def test_stale_expected_champion_is_a_conflict_and_changes_nothing(warehouse):
    with warehouse.connect() as conn:
        _register(conn), _register(conn)
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
        with pytest.raises(registry.PromotionConflict):
            registry.record_decision(
                conn,
                model_name="m",
                to_version="v2",
                expected_from=None,
                outcome="promoted",
                trigger="sensor",
                reason="late",
                gate_results={},
                run_id=None,
            )
        assert registry.champion(conn, "m").version_id == "v1"
        assert len(registry.promotion_events(conn, "m")) == 1


def test_concurrent_promotions_never_interleave(warehouse):
    """Eight threads race to promote different versions from 'no champion': exactly one wins."""
    with warehouse.connect() as conn:
        for _ in range(8):
            _register(conn)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def promote(version: str):
        barrier.wait()
        try:
            with warehouse.connect() as conn:
                registry.record_decision(
                    conn,
                    model_name="m",
                    to_version=version,
                    expected_from=None,
                    outcome="promoted",
                    trigger="sensor",
                    reason=f"race {version}",
                    gate_results={},
                    run_id=None,
                )
            outcomes.append("won")
        except Exception as exc:  # a conflict, raised either by our compare-and-set or by DuckDB's own
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=promote, args=(f"v{i}",)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1, outcomes
    with warehouse.connect() as conn:
        events = registry.promotion_events(conn, "m")
        assert len(events) == 1
        assert registry.champion(conn, "m").version_id == events[0]["to_version"]
