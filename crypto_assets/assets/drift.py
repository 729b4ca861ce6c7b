"""Daily feature drift, computed with Evidently and stored in ``ml.feature_drift`` / ``ml.drift_summaries``.

For day D (split id D) the asset compares, over the features of the spec:

- ``holdout_vs_train``: the split's holdout (current) against its own train part (reference);
- ``latest_vs_champion:<model>``: the same holdout against the train part of the split each
  current champion was trained on, once champions exist.

The reference is sampled to at most ``max_reference_rows`` rows with a fixed seed, so a rerun
gives the same numbers. Each comparison is saved as an Evidently HTML report under
``CRYPTO_ASSETS_REPORTS_DIR`` (default ``.local/reports``).
"""

import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
from pydantic import Field

from crypto_assets.assets.splits import SPLITS_KEY, load_split
from crypto_assets.feature_spec import MODEL_FEATURES
from crypto_assets.market.schema import utc_naive
from crypto_assets.metadata import markdown_preview
from crypto_assets.partitions import daily_partitions
from crypto_assets.registry import champion_split_ids
from crypto_assets.warehouse import Warehouse, insert_frame, transaction

FEATURE_DRIFT_KEY = dg.AssetKey("feature_drift")
DRIFT_SHARE_CHECK = "drift_share_below_threshold"
# Metadata key of the holdout_vs_train drift share; the drift sensor reads it.
DRIFT_SHARE_METADATA_KEY = "drift_share"
HOLDOUT_VS_TRAIN = "holdout_vs_train"
CHAMPION_COMPARISON_PREFIX = "latest_vs_champion:"

REPORTS_DIR_ENV = "CRYPTO_ASSETS_REPORTS_DIR"
DEFAULT_REPORTS_DIR = ".local/reports"
SAMPLE_SEED = 0

# Types of the metrics and tests in an Evidently 0.7 snapshot dict that this module reads.
_DRIFTED_COUNT_TYPE = "evidently:metric_v2:DriftedColumnsCount"
_VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"


class DriftConfig(dg.Config):
    drift_share_threshold: float = Field(
        default=0.3, gt=0.0, le=1.0,
        description="The drift check warns when the holdout_vs_train share of drifted features exceeds this.",
    )
    max_reference_rows: int = Field(
        default=5000, ge=50, description="Reference rows are sampled (fixed seed) down to at most this many."
    )


def reports_dir() -> Path:
    """Absolute folder for the HTML reports (``CRYPTO_ASSETS_REPORTS_DIR``, default ``.local/reports``)."""
    return Path(os.environ.get(REPORTS_DIR_ENV) or DEFAULT_REPORTS_DIR).expanduser().resolve()


def report_file_name(split_id: str, comparison: str) -> str:
    """``feature_drift_<split_id>_<comparison>.html`` with anything but letters, digits, '.', '-' and '_' replaced."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{split_id}_{comparison}")
    return f"feature_drift_{safe}.html"


@dataclass
class DriftResult:
    """One comparison: per-feature rows and the share of drifted features, as Evidently computed them."""

    features: pd.DataFrame  # feature, drift_score, stattest, threshold, drifted (NULLs for skipped features)
    drift_share: float
    drifted_features: int
    features_compared: int
    reference_rows: int
    current_rows: int
    skipped_features: list[str] = field(default_factory=list)
    snapshot: Any = None  # evidently Snapshot, for save_html


def _import_evidently():
    """Import Evidently lazily: it takes seconds, and the code location must load fast."""
    with warnings.catch_warnings():
        # Its dependencies (plotly, litestar, numpy.core) warn about deprecations on import.
        warnings.simplefilter("ignore", DeprecationWarning)
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

    return DataDefinition, Dataset, Report, DataDriftPreset


def _status(value) -> str:
    return str(getattr(value, "value", value)).upper()


def parse_drift_snapshot(snapshot: dict) -> tuple[pd.DataFrame, float, int]:
    """Per-feature rows, drift share and drifted count out of an Evidently ``DataDriftPreset`` snapshot dict.

    Per feature, the ``ValueDrift`` metric gives the score (value) and the resolved method and
    threshold (config); whether it drifted is the status of its test (FAIL = drifted), which
    Evidently decides with the method's own direction (p-values drift below the threshold,
    distances above it). The share comes from the ``DriftedColumnsCount`` metric.
    """
    drifted_by_metric = {
        test["metric_config"]["metric_id"]: _status(test["status"]) == "FAIL"
        for test in snapshot.get("tests", [])
        if test["metric_config"]["params"].get("type") == _VALUE_DRIFT_TYPE
    }
    rows, share, count = [], None, None
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config.get("type") == _DRIFTED_COUNT_TYPE:
            count, share = int(metric["value"]["count"]), float(metric["value"]["share"])
        elif config.get("type") == _VALUE_DRIFT_TYPE:
            if metric["id"] not in drifted_by_metric:
                raise RuntimeError(f"Evidently snapshot has no drift test for column {config['column']!r}; was the report run with include_tests=True?")
            score = metric["value"]
            rows.append({
                "feature": config["column"],
                "drift_score": None if score is None or pd.isna(score) else float(score),
                "stattest": config.get("method"),
                "threshold": None if config.get("threshold") is None else float(config["threshold"]),
                "drifted": drifted_by_metric[metric["id"]],
            })
    if share is None:
        raise RuntimeError("Evidently snapshot has no DriftedColumnsCount metric")
    return pd.DataFrame(rows, columns=["feature", "drift_score", "stattest", "threshold", "drifted"]), share, count


def compute_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], max_reference_rows: int) -> DriftResult:
    """Run Evidently's DataDriftPreset over ``columns`` (all numerical); the reference is sampled deterministically."""
    DataDefinition, Dataset, Report, DataDriftPreset = _import_evidently()

    if len(reference) > max_reference_rows:
        reference = reference.sample(n=max_reference_rows, random_state=SAMPLE_SEED).sort_index()
    reference = reference[columns].astype("float64")
    current = current[columns].astype("float64")
    # Evidently refuses a column with no values on either side (e.g. hl_range where a source has no high/low).
    skipped = [c for c in columns if reference[c].notna().sum() == 0 or current[c].notna().sum() == 0]
    compared = [c for c in columns if c not in skipped]
    if not compared:
        raise dg.Failure(description=f"no feature has values in both reference and current data (columns: {', '.join(columns)})")

    definition = DataDefinition(numerical_columns=compared)
    with warnings.catch_warnings():
        # Evidently 0.7 calls pandas APIs that pandas 3 deprecates (once per column), and numpy warns
        # on constant columns (a one-day holdout has a single day of week) in its correlation plots.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"evidently\.")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"evidently\.")
        warnings.filterwarnings("ignore", message="invalid value encountered", category=RuntimeWarning)
        snapshot = Report([DataDriftPreset(columns=compared)], include_tests=True).run(
            current_data=Dataset.from_pandas(current[compared], data_definition=definition),
            reference_data=Dataset.from_pandas(reference[compared], data_definition=definition),
        )
    features, share, count = parse_drift_snapshot(snapshot.dict())
    if skipped:
        features = pd.concat(
            [features, pd.DataFrame({"feature": skipped, "drift_score": None, "stattest": None, "threshold": None, "drifted": None})],
            ignore_index=True,
        )
    return DriftResult(
        features=features, drift_share=share, drifted_features=count, features_compared=len(compared),
        reference_rows=len(reference), current_rows=len(current), skipped_features=skipped, snapshot=snapshot,
    )


def _severity(row) -> float:
    """How far past (>1) or short of (<1) its threshold a feature's score is, whatever the test's direction."""
    score, threshold, drifted = row["drift_score"], row["threshold"], row["drifted"]
    if pd.isna(score) or pd.isna(threshold) or pd.isna(drifted) or threshold == 0:
        return float("nan")
    lower_means_drift = bool(drifted) == (score < threshold)  # p-value tests drift below, distances above
    if lower_means_drift:
        return float("inf") if score == 0 else threshold / score
    return score / threshold


def top_drifted_table(features: pd.DataFrame, limit: int = 10) -> dg.MarkdownMetadataValue:
    ranked = features.dropna(subset=["drifted"]).assign(severity=lambda f: f.apply(_severity, axis=1))
    ranked = ranked.sort_values(["drifted", "severity"], ascending=False)
    return markdown_preview(ranked[["feature", "drift_score", "stattest", "threshold", "drifted", "severity"]], limit=limit)


def _load_features(conn: duckdb.DuckDBPyConnection, split_id: str, part: str) -> pd.DataFrame:
    frame = load_split(conn, split_id, part)
    missing = [c for c in MODEL_FEATURES if c not in frame.columns]
    if missing:
        raise dg.Failure(description=f"features.coin_features lacks feature columns {missing}; rematerialize coin_features with the current feature spec")
    return frame[MODEL_FEATURES]


def _save_html(snapshot, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    snapshot.save_html(str(tmp))
    os.replace(tmp, path)


@dg.asset(
    key=FEATURE_DRIFT_KEY,
    deps=[dg.AssetDep(SPLITS_KEY)],
    partitions_def=daily_partitions,
    pool="duckdb_writer",
    group_name="training",
    kinds={"evidently", "duckdb"},
    owners=["team:ml-platform"],
    metadata={"dagster/table_name": "ml.feature_drift"},
    check_specs=[
        dg.AssetCheckSpec(
            DRIFT_SHARE_CHECK, asset=FEATURE_DRIFT_KEY, blocking=False,
            description="The holdout's share of drifted features against its train part is at most the configured threshold.",
        ),
    ],
)
def feature_drift(context: dg.AssetExecutionContext, config: DriftConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Per-feature drift of the day's holdout against its train part and against each champion's training data, with Evidently.

    Rows go to ml.feature_drift (one per feature and comparison) and ml.drift_summaries (one per
    comparison), replacing the split's previous rows. Each comparison's HTML report is linked in
    the metadata. The drift-share check only warns; the drift sensor decides about retraining.
    """
    split_id = context.partition_key

    # Read everything first and release the file: Evidently takes seconds per report.
    with warehouse.connect() as conn:
        current = _load_features(conn, split_id, "holdout")
        train = _load_features(conn, split_id, "train")
        if current.empty or train.empty:
            raise dg.Failure(
                description=(
                    f"split {split_id!r} has {len(train)} train and {len(current)} holdout rows in ml.training_splits; "
                    f"materialize training_splits for partition {split_id} first"
                )
            )
        champions = champion_split_ids(conn)
        references = {split_id: train}
        for champion_split in sorted(set(champions.values())):
            if champion_split not in references:
                references[champion_split] = _load_features(conn, champion_split, "train")

    comparisons: list[tuple[str, str]] = [(HOLDOUT_VS_TRAIN, split_id)]
    comparisons += [(f"{CHAMPION_COMPARISON_PREFIX}{name}", s) for name, s in sorted(champions.items())]

    folder = reports_dir()
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, DriftResult] = {}  # by reference split id: one Evidently run per distinct reference
    paths: dict[str, Path] = {}
    skipped_comparisons: list[str] = []
    for comparison, reference_split in comparisons:
        reference = references[reference_split]
        if reference.empty:
            context.log.warning(f"{comparison}: champion split {reference_split!r} has no train rows any more; comparison skipped")
            skipped_comparisons.append(f"{comparison} (split {reference_split} has no train rows)")
            continue
        if reference_split not in results:
            results[reference_split] = compute_drift(reference, current, MODEL_FEATURES, config.max_reference_rows)
        path = folder / report_file_name(split_id, comparison)
        _save_html(results[reference_split].snapshot, path)
        paths[comparison] = path
        context.log.info(f"{comparison}: drift share {results[reference_split].drift_share:.3f}, report {path}")

    now = utc_naive(datetime.now(timezone.utc))
    done = [(c, s) for c, s in comparisons if c in paths]
    feature_rows = pd.concat(
        [results[s].features.assign(split_id=split_id, comparison=c) for c, s in done], ignore_index=True
    )
    summaries = pd.DataFrame([
        {
            "split_id": split_id, "comparison": c, "drift_share": results[s].drift_share,
            "drifted_features": results[s].drifted_features, "features": results[s].features_compared,
            "reference_rows": results[s].reference_rows, "current_rows": results[s].current_rows,
            "report_path": str(paths[c]), "created_at": now,
        }
        for c, s in done
    ])
    with warehouse.connect() as conn, transaction(conn):
        conn.execute("DELETE FROM ml.feature_drift WHERE split_id = ?", [split_id])
        conn.execute("DELETE FROM ml.drift_summaries WHERE split_id = ?", [split_id])
        insert_frame(conn, "ml.feature_drift", feature_rows)
        insert_frame(conn, "ml.drift_summaries", summaries)

    main = results[split_id]
    main_path = paths[HOLDOUT_VS_TRAIN]
    passed = main.drift_share <= config.drift_share_threshold
    metadata: dict[str, Any] = {
        "dagster/row_count": len(feature_rows),
        DRIFT_SHARE_METADATA_KEY: float(main.drift_share),
        "drifted_features": int(main.drifted_features),
        "features_compared": int(main.features_compared),
        "reference_rows": int(main.reference_rows),
        "current_rows": int(main.current_rows),
        "drift_share_threshold": float(config.drift_share_threshold),
        "top_drifted_features": top_drifted_table(main.features),
        "comparisons": markdown_preview(
            summaries[["comparison", "drift_share", "drifted_features", "features", "reference_rows", "current_rows"]],
            limit=len(summaries),
        ),
        "report": dg.MetadataValue.path(str(main_path)),
        "report_url": dg.MetadataValue.url(main_path.as_uri()),
    }
    champion_done = [(c, s) for c, s in done if c != HOLDOUT_VS_TRAIN]
    if champion_done:
        metadata["champion_drift_share"] = max(float(results[s].drift_share) for _, s in champion_done)
        for c, _ in champion_done:
            metadata[f"report/{c}"] = dg.MetadataValue.path(str(paths[c]))
    if main.skipped_features:
        metadata["skipped_features"] = ", ".join(main.skipped_features)
    if skipped_comparisons:
        metadata["skipped_comparisons"] = "; ".join(skipped_comparisons)

    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                asset_key=FEATURE_DRIFT_KEY,
                check_name=DRIFT_SHARE_CHECK,
                passed=bool(passed),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "drift_share": float(main.drift_share),
                    "threshold": float(config.drift_share_threshold),
                    "drifted_features": int(main.drifted_features),
                    "features_compared": int(main.features_compared),
                },
                description=(
                    f"{main.drifted_features} of {main.features_compared} features drifted "
                    f"(share {main.drift_share:.3f}, threshold {config.drift_share_threshold})"
                ),
            )
        ],
    )
