"""The model registry: plain DuckDB tables in the ``registry`` schema.

- ``model_versions`` is append-only: every trained candidate, with its artifact and sha256.
- ``aliases`` says which version is ``champion`` for each model now.
- ``promotion_events`` is an append-only log of every champion decision (promoted, rolled back,
  refused), with the trigger, the reason and the gate results.

Version specifiers, as users type them: ``champion``, ``latest``, ``latest-N``, or a version id
(``v7`` or ``7``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from crypto_assets.duckdb_errors import is_write_conflict
from crypto_assets.market.schema import utc_naive
from crypto_assets.warehouse import transaction

log = logging.getLogger(__name__)

CHAMPION = "champion"
MODEL, BASELINE = "model", "baseline"  # what a version is: a trained candidate, or a baseline
TRIGGERS = ("sensor", "manual", "rollback")
_SPECIFIER = re.compile(r"^(champion|latest(?:-(\d+))?|v?(\d+))$")


class RegistryError(ValueError):
    """A version specifier or model name that does not resolve; the message says why."""


class ArtifactIntegrityError(RuntimeError):
    """The stored artifact's bytes do not match its recorded sha256: it is never unpickled."""


class PromotionConflict(RuntimeError):
    """The champion changed between reading it and replacing it."""


@dataclass(frozen=True)
class Lineage:
    """What a version was trained and evaluated on."""

    split_id: str
    feature_spec_version: str
    train_start: datetime | None = None
    train_end: datetime | None = None
    train_rows: int | None = None
    train_positives: int | None = None
    training_frame_sha256: str | None = None
    evaluation_start: datetime | None = None
    evaluation_end: datetime | None = None
    evaluation_rows: int | None = None  # rows its recipe was evaluated on out of time
    evaluation_positives: int | None = None

    def as_metadata(self) -> dict[str, str | int]:
        """Flat, printable values for the Dagster UI (no None)."""

        def text(value) -> str | int:
            if value is None:
                return "unknown"
            return value if isinstance(value, (int, str)) else str(value)

        return {name: text(value) for name, value in self.__dict__.items()}


@dataclass(frozen=True)
class ModelVersion:
    model_name: str
    version_id: str
    version_number: int
    created_at: datetime
    run_id: str | None
    split_id: str
    params: dict
    features: list[str]
    feature_spec_version: str
    metrics: dict
    artifact_sha256: str
    lineage: Lineage
    kind: str = MODEL  # MODEL, or BASELINE: a baseline serving as champion of last resort

    @property
    def is_baseline(self) -> bool:
        return self.kind == BASELINE

    def recipe(self) -> tuple[str, str, str]:
        """What the version is made from, apart from data: params, features and feature spec. Same recipe, same "
        "walk-forward scores."""
        return (json.dumps(self.params, sort_keys=True), json.dumps(self.features), self.feature_spec_version)


_VERSION_COLUMNS = (
    "model_name, version_id, version_number, created_at, run_id, split_id, params, features, "
    "feature_spec_version, metrics, artifact_sha256, train_start, train_end, train_rows, train_positives, "
    "training_frame_sha256, evaluation_start, evaluation_end, holdout_rows, evaluation_positives, kind"
)


def _row_to_version(row) -> ModelVersion:
    (name, vid, number, created, run_id, split_id, params, features, spec, metrics, sha, *lineage_values, kind) = row
    return ModelVersion(
        model_name=name,
        version_id=vid,
        version_number=number,
        created_at=created,
        run_id=run_id,
        split_id=split_id,
        params=json.loads(params or "{}"),
        features=json.loads(features or "[]"),
        feature_spec_version=spec,
        metrics=json.loads(metrics or "{}"),
        artifact_sha256=sha,
        lineage=Lineage(split_id, spec, *lineage_values),
        kind=kind,
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def register_version(
    conn: duckdb.DuckDBPyConnection,
    *,
    model_name: str,
    model: Any,
    features: list[str],
    params: dict,
    lineage: Lineage,
    metrics: dict,
    run_id: str | None,
    kind: str = MODEL,
    write_evidence: Callable[[str], None] | None = None,
) -> tuple[ModelVersion, bool]:
    """The version of ``model_name`` made from these inputs: the existing one, or a new ``vN``; and whether it is new.

    A version is identified by what it was made from: kind, split, recipe (params, features, feature
    spec), evaluation window and the sha256 of its training frame. Training is deterministic, so
    the same inputs are the same version: a re-run registers nothing new.
    ``write_evidence(version_id)`` writes rows that belong with the version (its walk-forward
    scores, replacing earlier ones) in the same transaction: a version never exists without them.
    """
    artifact = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    values = {
        "model_name": model_name,
        "run_id": run_id,
        "split_id": lineage.split_id,
        "params": json.dumps(params, sort_keys=True, default=str),
        "features": json.dumps(features),
        "feature_spec_version": lineage.feature_spec_version,
        "train_start": lineage.train_start and utc_naive(lineage.train_start),
        "train_end": lineage.train_end and utc_naive(lineage.train_end),
        "train_rows": lineage.train_rows,
        "holdout_rows": lineage.evaluation_rows,
        "metrics": json.dumps(metrics, sort_keys=True),
        "artifact": artifact,
        "artifact_sha256": sha256(artifact),
        "train_positives": lineage.train_positives,
        "training_frame_sha256": lineage.training_frame_sha256,
        "evaluation_start": lineage.evaluation_start and utc_naive(lineage.evaluation_start),
        "evaluation_end": lineage.evaluation_end and utc_naive(lineage.evaluation_end),
        "evaluation_positives": lineage.evaluation_positives,
        "created_at": utc_naive(datetime.now(UTC)),
        "kind": kind,
    }
    identity = ("model_name", "kind", "split_id", "params", "features", "feature_spec_version",
                "training_frame_sha256", "evaluation_start", "evaluation_end")  # fmt: skip
    with transaction(conn):
        guard_registry_write(conn)
        existing = conn.execute(
            "SELECT version_number, artifact_sha256 FROM registry.model_versions WHERE "
            + " AND ".join(f"{c} IS NOT DISTINCT FROM ?" for c in identity)
            + " ORDER BY version_number LIMIT 1",
            [values[c] for c in identity],
        ).fetchone()
        if existing is not None:
            number, stored_sha = existing
            if stored_sha != values["artifact_sha256"]:
                log.warning(
                    "%s v%s: refitting on the same inputs gave other bytes (sha256 %s, registered %s); "
                    "the registered artifact is kept",
                    model_name, number, values["artifact_sha256"][:12], stored_sha[:12],
                )  # fmt: skip
        else:
            number = conn.execute(
                "SELECT coalesce(max(version_number), 0) + 1 FROM registry.model_versions WHERE model_name = ?",
                [model_name],
            ).fetchone()[0]
            values.update(version_id=f"v{number}", version_number=number)
            conn.execute(
                f"INSERT INTO registry.model_versions ({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})",
                list(values.values()),
            )
        if write_evidence is not None:
            write_evidence(f"v{number}")
    return resolve(conn, model_name, f"v{number}"), existing is None


def resolve(conn: duckdb.DuckDBPyConnection, model_name: str, specifier: str) -> ModelVersion:
    """The version a specifier names, or a RegistryError saying why there is none."""
    match = _SPECIFIER.match(specifier.strip()) if isinstance(specifier, str) else None
    if not match:
        raise RegistryError(
            f"version specifier {specifier!r} is not valid: use 'champion', 'latest', 'latest-N' or a version id "
            "like 'v3'"
        )
    count = conn.execute("SELECT count(*) FROM registry.model_versions WHERE model_name = ?", [model_name]).fetchone()[
        0
    ]
    if count == 0:
        raise RegistryError(f"model {model_name!r} has no versions in the registry")
    spec = match.group(1)
    if spec == CHAMPION:
        row = conn.execute(
            f"SELECT {_VERSION_COLUMNS} FROM registry.model_versions v JOIN registry.aliases a USING (model_name, "
            "version_id) "
            "WHERE a.model_name = ? AND a.alias = ?",
            [model_name, CHAMPION],
        ).fetchone()
        if row is None:
            raise RegistryError(f"model {model_name!r} has no champion yet")
        return _row_to_version(row)
    if spec.startswith("latest"):
        back = int(match.group(2) or 0)
        if back >= count:
            raise RegistryError(
                f"{spec!r} is out of range: model {model_name!r} has {count} version(s), so at most latest-{count - 1}"
            )
        row = conn.execute(
            f"SELECT {_VERSION_COLUMNS} FROM registry.model_versions WHERE model_name = ? "
            "ORDER BY version_number DESC LIMIT 1 OFFSET ?",
            [model_name, back],
        ).fetchone()
        return _row_to_version(row)
    row = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM registry.model_versions WHERE model_name = ? AND version_number = ?",
        [model_name, int(match.group(3))],
    ).fetchone()
    if row is None:
        raise RegistryError(f"model {model_name!r} has no version {spec!r} (it has v1 to v{count})")
    return _row_to_version(row)


def load_artifact(conn: duckdb.DuckDBPyConnection, version: ModelVersion) -> Any:
    """Unpickle a version's model, after checking its bytes against the recorded sha256."""
    artifact, recorded = conn.execute(
        "SELECT artifact, artifact_sha256 FROM registry.model_versions WHERE model_name = ? AND version_id = ?",
        [version.model_name, version.version_id],
    ).fetchone()
    actual = sha256(bytes(artifact))
    if actual != recorded or recorded != version.artifact_sha256:
        raise ArtifactIntegrityError(
            f"{version.model_name} {version.version_id}: artifact sha256 {actual[:12]}… does not match the recorded "
            f"{recorded[:12]}…; refusing to unpickle it"
        )
    return pickle.loads(bytes(artifact))  # noqa: S301 - verified above against the registry's own hash


def verify_artifact(conn: duckdb.DuckDBPyConnection, version: ModelVersion) -> bool:
    """Whether the stored bytes still match their sha256 (without unpickling)."""
    artifact, recorded = conn.execute(
        "SELECT artifact, artifact_sha256 FROM registry.model_versions WHERE model_name = ? AND version_id = ?",
        [version.model_name, version.version_id],
    ).fetchone()
    return sha256(bytes(artifact)) == recorded == version.artifact_sha256


def latest_model(conn: duckdb.DuckDBPyConnection, model_name: str) -> ModelVersion | None:
    """The newest trained candidate (never a baseline), or None."""
    row = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM registry.model_versions WHERE model_name = ? AND kind = ? "
        "ORDER BY version_number DESC LIMIT 1",
        [model_name, MODEL],
    ).fetchone()
    return _row_to_version(row) if row else None


def champion(conn: duckdb.DuckDBPyConnection, model_name: str) -> ModelVersion | None:
    try:
        return resolve(conn, model_name, CHAMPION)
    except RegistryError:
        return None


def record_decision(
    conn: duckdb.DuckDBPyConnection,
    *,
    model_name: str,
    to_version: str | None,
    expected_from: str | None,
    outcome: str,
    trigger: str,
    reason: str,
    gate_results: dict | None,
    run_id: str | None,
    candidate_version: str | None = None,
) -> dict:
    """Record one champion decision; for 'promoted' and 'rolled_back', move the alias to ``to_version`` too.

    ``candidate_version`` is the version decided about (for a refusal, the refused candidate; by
    default ``to_version``). Alias and event change in one transaction, and only if the champion
    is still ``expected_from`` (compare-and-set), so two promotions can never interleave.
    """
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {TRIGGERS}, got {trigger!r}")
    if outcome not in ("promoted", "rolled_back", "refused"):
        raise ValueError(f"unknown outcome {outcome!r}")
    if not reason.strip():
        raise ValueError("a promotion decision needs a reason")
    now = utc_naive(datetime.now(UTC))
    event = {
        "event_id": uuid.uuid4().hex,
        "model_name": model_name,
        "from_version": expected_from,
        "to_version": to_version if outcome != "refused" else expected_from,
        "outcome": outcome,
        "trigger": trigger,
        "reason": reason,
        "gate_results": json.dumps(gate_results or {}, sort_keys=True),
        "run_id": run_id,
        "created_at": now,
        "candidate_version": candidate_version or to_version,
    }
    try:
        with transaction(conn):
            guard_registry_write(conn)
            current = conn.execute(
                "SELECT version_id FROM registry.aliases WHERE model_name = ? AND alias = ?", [model_name, CHAMPION]
            ).fetchone()
            current = current[0] if current else None
            if current != expected_from:
                raise PromotionConflict(
                    f"{model_name}: champion is {current or 'none'}, expected {expected_from or 'none'}; "
                    "another promotion won the race"
                )
            if outcome != "refused":
                # Update, else insert: the upsert DuckLake can run too (it has no keys for ON CONFLICT).
                updated = conn.execute(
                    "UPDATE registry.aliases SET version_id = ?, updated_at = ? WHERE model_name = ? AND alias = ?",
                    [to_version, now, model_name, CHAMPION],
                ).fetchone()[0]
                if not updated:
                    conn.execute(
                        "INSERT INTO registry.aliases (model_name, alias, version_id, updated_at) VALUES (?, ?, ?, ?)",
                        [model_name, CHAMPION, to_version, now],
                    )
            conn.execute(
                "INSERT INTO registry.promotion_events BY NAME SELECT * FROM (SELECT "
                + ", ".join(f"? AS {k}" for k in event)
                + ")",
                list(event.values()),
            )
    except duckdb.TransactionException as exc:
        if not is_write_conflict(exc):
            raise
        # DuckLake: another registry write committed while this one was deciding (the guard row).
        raise PromotionConflict(
            f"{model_name}: another registry write committed first while deciding from {expected_from or 'none'}; "
            "nothing was recorded, decide again"
        ) from exc
    return event


def guard_registry_write(conn: duckdb.DuckDBPyConnection) -> None:
    """Update ``registry.write_guard`` inside a registry write's transaction.

    On the DuckDB file, primary keys and one writer at a time already keep versions unique and the
    champion single. On DuckLake there are no keys: two registry writes that overlap in time both
    change this row, so the second one to commit fails (a write conflict) instead of registering a
    duplicate version id or a second champion. The lake creates the row with its tables.
    """
    now = utc_naive(datetime.now(UTC))
    if not conn.execute("UPDATE registry.write_guard SET touched_at = ?", [now]).fetchone()[0]:
        conn.execute("INSERT INTO registry.write_guard VALUES (?)", [now])


def promotion_events(conn: duckdb.DuckDBPyConnection, model_name: str) -> list[dict]:
    cursor = conn.execute(
        "SELECT * FROM registry.promotion_events WHERE model_name = ? ORDER BY created_at, event_id", [model_name]
    )
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
