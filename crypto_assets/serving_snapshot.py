"""The serving snapshot: what the prediction service answers from, written by the pipeline.

DuckDB lets one process at a time open the warehouse, and some run writes it every hour, so the
prediction service (``crypto_assets/serve.py``) never opens it while it serves. Instead the
pipeline writes this small, read-only file after each scoring run and after each champion decision
(``publish``, one call in the scoring assets and in ``model_champions``), and the service reloads
it when it changes.

The file is a zip archive, replaced atomically (written to a temporary file beside it, fsynced, then
``os.replace``), so a reader sees the old file or the new one, never half of one:

- ``manifest.json``: when it was written and from which warehouse; the feature spec version; for
  every model family its champion (version, kind — a model or a baseline champion of last resort —
  since when, the decision that made it champion and its gate evidence in one line, the artifact's
  sha256) or why nothing is served; and the champions' scores of the latest
  ``CRYPTO_ASSETS_SERVING_HISTORY_HOURS`` scored hours (for each model, coin and hour the row of
  the version that was champion, preferring the current champion where it re-scored the hour);
- ``artifacts/<model>-<version>.pkl``: each champion's pickled model, the registry's bytes, checked
  against the registry's sha256 when written; the service checks them again before unpickling.

Where it lives: ``CRYPTO_ASSETS_SERVING_SNAPSHOT_PATH``, by default beside the warehouse file
(``.local/crypto_assets.serving-snapshot.zip``). Writing it never fails a run: a failure is logged
as a warning and the service keeps serving the previous file (and says it is degraded once its data
is stale).

``python -m crypto_assets.serving_snapshot [--database PATH] [--output PATH]`` (re)builds it from an
existing warehouse, opened read-only (waiting for a writer to finish, at most ``--wait`` seconds).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import pickle
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crypto_assets.settings import read_settings

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import duckdb

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# A snapshot holds a week of scores and a few pickled models: megabytes. Anything far larger is not one.
MAX_SNAPSHOT_BYTES = 512 * 1024 * 1024
FORECAST_COLUMNS = ("model_name", "coin_id", "symbol", "hour", "version_id", "score", "flagged", "scored_at")
# What each family's score means to a consumer (a family not listed here: "score", higher = more likely).
SCORE_MEANINGS = {
    "volatility_model": "probability of a volatility spike in the next 6 hours",
    "anomaly_detector": "anomaly score: higher is more anomalous; flagged above the model's threshold",
}
BASELINE_MEANING = "the score of a baseline serving as champion of last resort (flagged above its threshold)"


class SnapshotError(RuntimeError):
    """A snapshot that cannot be used: unreadable, of another format, or with an artifact that fails its sha256."""


def _iso(ts: datetime | None) -> str | None:
    """A naive-UTC (DuckDB) or aware timestamp as ISO 8601 with a Z."""
    if ts is None:
        return None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.isoformat(timespec="seconds") + "Z"


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def evidence_line(decision: dict | None, comparisons: list[tuple], metrics: dict[str, float]) -> str:
    """The champion's gate evidence in one line: how it became champion, its gates and comparison intervals."""
    if decision is None:
        return "no promotion event recorded for this version"
    parts = [f"{decision['outcome']} ({decision['trigger']}) {_iso(decision['created_at'])}"]
    gates = json.loads(decision.get("gate_results") or "{}")
    outcomes = {g: o for g, o in gates.items() if isinstance(o, str)}
    if outcomes:
        failed = [f"{g} {o}" for g, o in outcomes.items() if o != "passed"]
        parts.append(
            f"gates {len(outcomes) - len(failed)}/{len(outcomes)} passed"
            + (f" ({', '.join(failed)})" if failed else "")
        )
    for gate, comparator, metric, difference, low, high, outcome in comparisons:
        if difference is None or low is None or high is None:
            parts.append(f"{gate} vs {comparator}: {outcome}")
        else:
            parts.append(f"{gate} vs {comparator}: {metric} {difference:+.4f} (CI [{low:+.4f}, {high:+.4f}]) {outcome}")
    if metrics:
        parts.append(", ".join(f"{name} {value:.4f}" for name, value in sorted(metrics.items())[:3]))
    if decision["trigger"] != "sensor":
        reason = " ".join(str(decision.get("reason") or "").split())
        parts.append(f'reason: "{reason[:160]}{"…" if len(reason) > 160 else ""}"')
    return "; ".join(parts)


def _champion_entry(conn: duckdb.DuckDBPyConnection, name: str) -> tuple[dict | None, str | None, bytes | None]:
    """(the champion's manifest entry, why nothing is served, the artifact's bytes)."""
    from crypto_assets import registry
    from crypto_assets.feature_spec import FEATURE_SPEC_VERSION

    version = registry.champion(conn, name)
    if version is None:
        return None, f"no {name} champion yet (train, evaluate and promote one first)", None
    if version.feature_spec_version != FEATURE_SPEC_VERSION:
        return (
            None,
            f"champion {version.version_id} was trained on feature spec {version.feature_spec_version}, "
            f"features are now {FEATURE_SPEC_VERSION}: retrain before serving",
            None,
        )
    artifact, recorded = conn.execute(
        "SELECT artifact, artifact_sha256 FROM registry.model_versions WHERE model_name = ? AND version_id = ?",
        [name, version.version_id],
    ).fetchone()
    artifact = bytes(artifact)
    if _sha256(artifact) != recorded or recorded != version.artifact_sha256:
        return None, f"champion {version.version_id}: artifact sha256 does not match the registry's; not served", None
    since = conn.execute(
        "SELECT updated_at FROM registry.aliases WHERE model_name = ? AND alias = ?", [name, registry.CHAMPION]
    ).fetchone()[0]
    cursor = conn.execute(
        """
        SELECT outcome, trigger, reason, gate_results, created_at FROM registry.promotion_events
        WHERE model_name = ? AND to_version = ? AND outcome IN ('promoted', 'rolled_back')
        ORDER BY created_at DESC, event_id DESC LIMIT 1
        """,
        [name, version.version_id],
    )
    row = cursor.fetchone()
    decision = dict(zip([d[0] for d in cursor.description], row, strict=True)) if row else None
    comparisons = conn.execute(
        """
        SELECT gate, comparator, metric, difference, ci_low, ci_high, outcome FROM ml.gate_evidence
        WHERE model_name = ? AND version_id = ?
          AND split_id = (SELECT max(split_id) FROM ml.gate_evidence WHERE model_name = ? AND version_id = ?)
        ORDER BY gate, comparator
        """,
        [name, version.version_id, name, version.version_id],
    ).fetchall()
    metrics = {k: v for k, v in version.metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    entry = {
        "version_id": version.version_id,
        "version_number": version.version_number,
        "kind": version.kind,
        "is_baseline": version.is_baseline,
        "since": _iso(since),
        "trained_on": version.split_id,
        "created_at": _iso(version.created_at),
        "feature_spec_version": version.feature_spec_version,
        "features": list(version.features),
        "trigger": decision["trigger"] if decision else None,
        "evidence": evidence_line(decision, comparisons, {} if comparisons else metrics),
        "artifact_sha256": recorded,
        "artifact": f"artifacts/{name}-{version.version_id}.pkl",
    }
    return entry, None, artifact


def _forecast_rows(conn: duckdb.DuckDBPyConnection, names: list[str], history_hours: int) -> tuple[str | None, list]:
    """(the latest scored hour, the champions' rows of the latest ``history_hours`` scored hours, newest first)."""
    latest = conn.execute(
        "SELECT max(partition_hour) FROM serving.model_scores WHERE role = 'champion' AND list_contains(?, model_name)",
        [names],
    ).fetchone()[0]
    if latest is None:
        return None, []
    start = latest - timedelta(hours=history_hours - 1)
    rows = conn.execute(
        """
        WITH ranked AS (
            SELECT s.model_name, s.coin_id, s.partition_hour, s.version_id, s.score, s.flagged, s.scored_at,
                   row_number() OVER (
                       PARTITION BY s.model_name, s.coin_id, s.partition_hour
                       ORDER BY coalesce(s.version_id = a.version_id, false) DESC, s.scored_at DESC,
                                v.version_number DESC
                   ) AS pick
            FROM serving.model_scores s
            LEFT JOIN registry.aliases a ON a.model_name = s.model_name AND a.alias = 'champion'
            LEFT JOIN registry.model_versions v ON v.model_name = s.model_name AND v.version_id = s.version_id
            WHERE s.role = 'champion' AND list_contains(?, s.model_name) AND s.partition_hour >= ?
        ),
        symbols AS (
            SELECT coin_id, partition_hour, any_value(symbol) AS symbol FROM features.coin_features
            WHERE partition_hour >= ? GROUP BY ALL
        )
        SELECT r.model_name, r.coin_id, coalesce(f.symbol, ''), r.partition_hour, r.version_id, r.score, r.flagged,
               r.scored_at
        FROM ranked r LEFT JOIN symbols f USING (coin_id, partition_hour)
        WHERE r.pick = 1
        ORDER BY r.partition_hour DESC, r.coin_id, r.model_name
        """,
        [names, start, start],
    ).fetchall()
    return _iso(latest), [
        [name, coin, symbol, _iso(hour), version, _finite(score), bool(flagged), _iso(scored_at)]
        for name, coin, symbol, hour, version, score, flagged, scored_at in rows
    ]


def write_snapshot(
    conn: duckdb.DuckDBPyConnection, path: str | Path, *, history_hours: int | None = None, warehouse: str = ""
) -> dict:
    """Write the serving snapshot of the warehouse behind ``conn`` to ``path``, atomically; return its manifest.

    ``history_hours`` (default: the setting) bounds the scored hours it carries; ``warehouse`` is the
    database path recorded in it (the service reports when that file goes missing).
    """
    from crypto_assets.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION
    from crypto_assets.ml.families import MODEL_FAMILIES

    history_hours = history_hours or read_settings().serving_history_hours
    path = Path(path)
    models, artifacts = [], {}
    for family in MODEL_FAMILIES:
        champion, not_served, artifact = _champion_entry(conn, family.name)
        meaning = BASELINE_MEANING if champion and champion["is_baseline"] else SCORE_MEANINGS.get(family.name)
        models.append(
            {
                "model_name": family.name,
                "description": family.description,
                "score_meaning": meaning or "score: higher is more likely positive",
                "champion": champion,
                "not_served": not_served,
            }
        )
        if champion is not None:
            artifacts[champion["artifact"]] = artifact
    latest_hour, rows = _forecast_rows(conn, [f.name for f in MODEL_FAMILIES], history_hours)
    manifest = {
        "format": FORMAT_VERSION,
        "written_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "warehouse": str(Path(warehouse).expanduser().resolve()) if warehouse and warehouse != ":memory:" else None,
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "feature_names": FEATURE_NAMES,
        "history_hours": history_hours,
        "latest_hour": latest_hour,
        "models": models,
        "forecast_columns": list(FORECAST_COLUMNS),
        "forecasts": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
                archive.writestr(MANIFEST, json.dumps(manifest, allow_nan=False))
                for name, data in artifacts.items():
                    archive.writestr(name, data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return manifest


def publish(conn: duckdb.DuckDBPyConnection, database: str, log=None) -> Path | None:
    """Write the snapshot of the warehouse file ``database`` where the prediction service reads it.

    Called by the scoring assets and ``model_champions`` after they commit. It never fails the run
    that calls it: a failure is a warning in ``log`` (the service keeps its last snapshot).
    """
    if not database or database == ":memory:":
        return None
    settings = read_settings()
    path = settings.snapshot_path_for(database)
    try:
        manifest = write_snapshot(conn, path, history_hours=settings.serving_history_hours, warehouse=database)
    except Exception as exc:  # noqa: BLE001 - serving must never fail the pipeline
        if log is not None:
            log.warning(f"serving snapshot not written to {path}: {type(exc).__name__}: {exc}")
        return None
    if log is not None:
        champions = ", ".join(
            f"{m['model_name']} {m['champion']['version_id'] if m['champion'] else 'none'}" for m in manifest["models"]
        )
        log.info(f"serving snapshot written to {path} (latest hour {manifest['latest_hour']}; champions {champions})")
    return path


def api_link_metadata() -> dict:
    """A link to the prediction service's ``/version`` for an asset's metadata (when CRYPTO_ASSETS_API_URL is set)."""
    import dagster as dg

    url = read_settings().api_url
    return {"prediction_api": dg.MetadataValue.url(f"{url}/version")} if url else {}


@dataclass(frozen=True)
class SnapshotFile:
    """A snapshot as read from disk: its manifest and its artifacts' bytes, each checked against its sha256."""

    manifest: dict
    artifacts: dict[str, bytes]  # model name -> pickled champion, verified

    def load_model(self, model_name: str) -> Any:
        """Unpickle a champion: its bytes were checked against the manifest's sha256 when the file was read."""
        return pickle.loads(self.artifacts[model_name])  # noqa: S301 - verified in read_snapshot


def read_snapshot(path: str | Path) -> SnapshotFile:
    """Read and check a snapshot file; raise SnapshotError (or OSError when it cannot be opened) saying why not."""
    with open(path, "rb") as handle:  # one read: the pipeline may replace the file right after
        data = handle.read(MAX_SNAPSHOT_BYTES + 1)
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"the snapshot is larger than {MAX_SNAPSHOT_BYTES} bytes: not a serving snapshot")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        manifest = json.loads(archive.read(MANIFEST))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise SnapshotError(f"the snapshot is not a readable serving snapshot ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise SnapshotError(
            f"the snapshot has format {manifest.get('format') if isinstance(manifest, dict) else '?'}, "
            f"this service reads format {FORMAT_VERSION}"
        )
    artifacts = {}
    for model in manifest["models"]:
        champion = model.get("champion")
        if not champion:
            continue
        try:
            artifact = archive.read(champion["artifact"])
        except KeyError:
            raise SnapshotError(
                f"{model['model_name']} {champion['version_id']}: artifact missing from the snapshot"
            ) from None
        if _sha256(artifact) != champion["artifact_sha256"]:
            raise SnapshotError(
                f"{model['model_name']} {champion['version_id']}: artifact sha256 does not match the snapshot's "
                "record; refusing to unpickle it"
            )
        artifacts[model["model_name"]] = artifact
    return SnapshotFile(manifest=manifest, artifacts=artifacts)


def open_read_only(database: str, wait_s: float) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the warehouse, waiting at most ``wait_s`` for a writer to let go of the file."""
    import time

    import duckdb

    from crypto_assets.duckdb_errors import lock_holder

    if not Path(database).expanduser().exists():
        raise FileNotFoundError(f"no warehouse file at {database}")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(database, read_only=True)
        except duckdb.IOException as exc:
            if lock_holder(exc) is None or time.monotonic() >= deadline:  # only another process's lock passes
                raise
            time.sleep(0.2)


def build_from_warehouse(
    database: str, path: str | Path, *, wait_s: float = 0.0, history_hours: int | None = None
) -> dict:
    """Write the snapshot of an existing warehouse file, opened read-only; return its manifest."""
    conn = open_read_only(database, wait_s)
    try:
        return write_snapshot(conn, path, history_hours=history_hours, warehouse=database)
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default=None, help="the warehouse file (default: CRYPTO_ASSETS_DUCKDB_PATH)")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="default: CRYPTO_ASSETS_SERVING_SNAPSHOT_PATH, else beside the warehouse",
    )
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for a writer to finish (default 60)")
    args = parser.parse_args(argv)
    settings = read_settings()
    database = args.database or settings.duckdb_path
    output = args.output or settings.snapshot_path_for(database)
    try:
        manifest = build_from_warehouse(database, output, wait_s=args.wait)
    except Exception as exc:  # noqa: BLE001 - a command-line tool: one line saying why
        raise SystemExit(f"serving snapshot not written: {type(exc).__name__}: {exc}") from None
    for model in manifest["models"]:
        champion = model["champion"]
        served = f"champion {champion['version_id']} ({champion['kind']})" if champion else model["not_served"]
        print(f"{model['model_name']}: {served}")
    print(
        f"serving snapshot written to {output}: latest scored hour {manifest['latest_hour']}, "
        f"{len(manifest['forecasts'])} rows of at most {manifest['history_hours']} hours"
    )


if __name__ == "__main__":
    main()
