"""Daily feature drift: the latest day against the weeks before it, per feature, with effect sizes.

For day D (split id D) the asset compares, over the features the models read:

- ``recent_vs_reference``: the rows of the ``current_days`` ending with D (current) against the
  ``reference_days`` before them (reference): like with like, recent market against recent market;
- ``recent_vs_champion_training:<model>``: the same current rows against the rows each current
  champion was trained on (its lineage), once champions exist.

Per feature the test is an effect size, not a p-value (with thousands of autocorrelated hourly rows
every p-value is tiny): Evidently's normed Wasserstein distance by default, or PSI. Slow features
(a week's volatility, say) move from day to day on a quiet market too, so by default each
feature's threshold is calibrated on the reference itself: the largest distance between one of its
days and the rest of it (times ``calibration_margin``, never below ``feature_threshold``). A
feature drifts when today is further from the reference than any reference day was (by the
margin). The dataset-level rule: drift is detected when at least ``drift_share_threshold`` of the
features drifted, or when one is ``decisive_factor`` times past its threshold (a frozen feed or a
unit change moves few features, but decisively). The reference is sampled to at most
``max_reference_rows`` rows with a fixed seed, so a re-run gives the same numbers. Each comparison
is saved as an Evidently HTML report in the ``reports`` resource's folder, linked over http
when a report server serves it (``crypto_assets/report_server.py``; the quickstart starts one).
"""

import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
import duckdb
from pydantic import Field, model_validator

from crypto_assets import registry
from crypto_assets.feature_spec import DRIFT_FEATURES, FEATURE_SPEC_VERSION
from crypto_assets.market.schema import utc_naive
from crypto_assets.metadata import markdown_preview, table
from crypto_assets.ml.families import MODEL_FAMILIES
from crypto_assets.partitions import daily_partitions
from crypto_assets.resources import Reports
from crypto_assets.training_data import refuse_stale_features
from crypto_assets.warehouse import Warehouse, insert_frame, query_frame, transaction

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import numpy as np
    import pandas as pd

FEATURE_DRIFT_KEY = dg.AssetKey("feature_drift")
DRIFT_CHECK = "no_dataset_drift"
# Metadata keys of the main comparison; the drift sensor reads them.
DRIFT_SHARE_METADATA_KEY = "drift_share"
DRIFT_DETECTED_METADATA_KEY = "drift_detected"
RECENT_VS_REFERENCE = "recent_vs_reference"
CHAMPION_COMPARISON_PREFIX = "recent_vs_champion_training:"

SAMPLE_SEED = 0

# Types of the metrics and tests in an Evidently 0.7 snapshot dict that this module reads.
_DRIFTED_COUNT_TYPE = "evidently:metric_v2:DriftedColumnsCount"
_VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"


class DriftConfig(dg.Config):
    current_days: int = Field(
        default=1, ge=1, le=14, description="Days ending with the partition's day that are compared (current)."
    )
    reference_days: int = Field(
        default=14, ge=1, le=90, description="Days right before the current window they are compared with (reference)."
    )
    method: Literal["wasserstein", "psi"] = Field(
        default="wasserstein",
        description="Per-feature effect size: normed Wasserstein distance, or population stability index.",
    )
    calibrate_thresholds: bool = Field(
        default=True,
        description=(
            "Wasserstein only: each feature's threshold is the largest distance between a "
            "reference day and the rest of the reference (times calibration_margin)."
        ),
    )
    calibration_margin: float = Field(
        default=1.5,
        ge=0.5,
        le=10.0,
        description=(
            "Multiplier on each calibrated threshold: how much further than the reference's own "
            "most unusual day a feature must move."
        ),
    )
    feature_threshold: float = Field(
        default=0.1,
        gt=0.0,
        description="A feature drifts when its effect size exceeds this (the floor under calibrated thresholds).",
    )
    per_feature_thresholds: dict[str, float] = Field(
        default_factory=dict, description="Thresholds for single features, overriding the others."
    )
    drift_share_threshold: float = Field(
        default=0.25,
        gt=0.0,
        le=1.0,
        description="Dataset-level rule: drift is detected when at least this share of the features drifted.",
    )
    decisive_factor: float = Field(
        default=3.0,
        gt=1.0,
        description=(
            "Dataset-level rule, second part: one feature further than this many times its "
            "threshold is drift by itself (a frozen feed, a unit change)."
        ),
    )
    max_reference_rows: int = Field(
        default=5000, ge=50, description="Reference rows are sampled (fixed seed) down to at most this many."
    )
    coin_cusum: bool = Field(
        default=True,
        description=(
            "Per-coin rule on top of the dataset-level one: a CUSUM of each coin's scale against the market "
            "(crypto_assets/ml/coin_drift.py) over the last cusum_days days, its reference the reference_days before."
        ),
    )
    cusum_days: int = Field(default=7, ge=1, le=30, description="Days the per-coin CUSUM accumulates over.")
    cusum_allowance: float = Field(
        default=0.2, ge=0.0, description="CUSUM allowance k (log ratio): daily moves below it never add up."
    )
    cusum_threshold: float = Field(default=0.35, gt=0.0, description="CUSUM threshold h: a coin drifted above it.")
    cusum_min_coins: int = Field(
        default=3, ge=1, description="The per-coin rule detects drift when at least this many coins drifted."
    )

    @model_validator(mode="after")
    def _known_features(self):
        unknown = sorted(set(self.per_feature_thresholds) - set(DRIFT_FEATURES))
        if unknown:
            raise ValueError(f"per_feature_thresholds names features drift does not compare: {', '.join(unknown)}")
        return self

    def rule(self) -> str:
        per_feature = (
            f"{self.method} above the largest reference day's (x{self.calibration_margin:g}, at least "
            f"{self.feature_threshold:g})"
            if self.calibrate_thresholds and self.method == "wasserstein"
            else f"{self.method} above {self.feature_threshold:g}"
        )
        coins = (
            f"; or when at least {self.cusum_min_coins} coins' CUSUM of log(beta / reference beta) over the last "
            f"{self.cusum_days} days exceeds {self.cusum_threshold:g} (allowance {self.cusum_allowance:g})"
            if self.coin_cusum
            else ""
        )
        return (
            f"{per_feature} per feature; drift when at least {self.drift_share_threshold:.0%} of features "
            "drift, or one is "
            f"{self.decisive_factor:g}x past its threshold; last {self.current_days} day(s) vs the "
            f"{self.reference_days} before" + coins
        )

    def cusum_settings(self):
        from crypto_assets.ml.coin_drift import CusumSettings

        return CusumSettings(
            allowance=self.cusum_allowance, threshold=self.cusum_threshold, min_coins=self.cusum_min_coins
        )

    def detects(self, result: "DriftResult") -> bool:
        """The dataset-level rule on one comparison."""
        scored = result.features.dropna(subset=["drift_score", "threshold"])
        scored = scored[scored["threshold"] > 0]
        furthest = float((scored["drift_score"] / scored["threshold"]).max()) if len(scored) else 0.0
        return result.drift_share >= self.drift_share_threshold or (
            self.method == "wasserstein" and furthest >= self.decisive_factor
        )


def _normed_wasserstein(reference: "np.ndarray", current: "np.ndarray") -> float:
    """Evidently's normed Wasserstein distance: in standard deviations of the reference (at least 0.001)."""
    import numpy as np
    from scipy.stats import wasserstein_distance

    return wasserstein_distance(reference, current) / max(float(np.std(reference)), 0.001)


def _largest_day_distance(values: "pd.Series", days: "pd.Series") -> float:
    """The largest distance between one day of ``values`` and the other days: how far a day strays on its own."""
    distances = []
    for day in days.unique():
        one, rest = values[days == day].dropna().to_numpy(), values[days != day].dropna().to_numpy()
        if len(one) > 1 and len(rest) > 1:
            distances.append(_normed_wasserstein(rest, one))
    return max(distances, default=0.0)


def calibrated_thresholds(reference: "pd.DataFrame", columns: list[str], config: DriftConfig) -> dict[str, float]:
    """Per feature: the largest distance between one reference day and the other days, times the margin.

    The distance is Evidently's, so the thresholds compare like with like with what it reports.
    """
    days = reference["partition_hour"].dt.floor("D")
    return {
        column: max(
            config.feature_threshold, config.calibration_margin * _largest_day_distance(reference[column], days)
        )
        for column in columns
    }


@dataclass
class DriftResult:
    """One comparison: per-feature rows and the share of drifted features, as Evidently computed them."""

    features: "pd.DataFrame"  # feature, drift_score, stattest, threshold, drifted (NULLs for skipped features)
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


def parse_drift_snapshot(snapshot: dict) -> "tuple[pd.DataFrame, float, int]":
    """Per-feature rows, drift share and drifted count out of an Evidently ``DataDriftPreset`` snapshot dict.

    Per feature, the ``ValueDrift`` metric gives the score (value) and the resolved method and
    threshold (config); whether it drifted is the status of its test (FAIL = drifted), which
    Evidently decides with the method's own direction (p-values drift below the threshold,
    distances above it). The share comes from the ``DriftedColumnsCount`` metric.
    """
    import pandas as pd

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
                raise RuntimeError(
                    f"Evidently snapshot has no drift test for column {config['column']!r}; was the report "
                    "run with include_tests=True?"
                )
            score = metric["value"]
            rows.append(
                {
                    "feature": config["column"],
                    "drift_score": None if score is None or pd.isna(score) else float(score),
                    "stattest": config.get("method"),
                    "threshold": None if config.get("threshold") is None else float(config["threshold"]),
                    "drifted": drifted_by_metric[metric["id"]],
                }
            )
    if share is None:
        raise RuntimeError("Evidently snapshot has no DriftedColumnsCount metric")
    return pd.DataFrame(rows, columns=["feature", "drift_score", "stattest", "threshold", "drifted"]), share, count


def compute_drift(
    reference: "pd.DataFrame", current: "pd.DataFrame", columns: list[str], config: DriftConfig
) -> DriftResult:
    """Run Evidently's DataDriftPreset over ``columns`` (all numerical) with the config's method and thresholds.

    The reference is sampled deterministically. ``drift_share`` is Evidently's share of drifted features.
    """
    import pandas as pd

    max_reference_rows = config.max_reference_rows
    thresholds = {}
    if config.method == "wasserstein" and config.calibrate_thresholds and "partition_hour" in reference:
        thresholds = calibrated_thresholds(reference, columns, config)
    thresholds.update(config.per_feature_thresholds)
    DataDefinition, Dataset, Report, DataDriftPreset = _import_evidently()

    if len(reference) > max_reference_rows:
        reference = reference.sample(n=max_reference_rows, random_state=SAMPLE_SEED).sort_index()
    reference = reference[columns].astype("float64")
    current = current[columns].astype("float64")
    # Evidently refuses a column with no values on either side (e.g. hl_range where a source has no high/low).
    skipped = [c for c in columns if reference[c].notna().sum() == 0 or current[c].notna().sum() == 0]
    compared = [c for c in columns if c not in skipped]
    if not compared:
        raise dg.Failure(
            description=f"no feature has values in both reference and current data (columns: {', '.join(columns)})"
        )

    definition = DataDefinition(numerical_columns=compared)
    with warnings.catch_warnings():
        # Evidently 0.7 calls pandas APIs that pandas 3 deprecates (once per column), and numpy warns
        # on constant columns (a frozen feed) in its correlation plots.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"evidently\.")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"evidently\.")
        warnings.filterwarnings("ignore", message="invalid value encountered", category=RuntimeWarning)
        preset = DataDriftPreset(
            columns=compared,
            # The report's headline says the project's rule, not Evidently's default share of 0.5.
            drift_share=config.drift_share_threshold,
            method=config.method,
            threshold=config.feature_threshold,
            per_column_threshold={c: t for c, t in thresholds.items() if c in compared} or None,
        )
        snapshot = Report([preset], include_tests=True).run(
            current_data=Dataset.from_pandas(current[compared], data_definition=definition),
            reference_data=Dataset.from_pandas(reference[compared], data_definition=definition),
        )
    features, share, count = parse_drift_snapshot(snapshot.dict())
    if skipped:
        features = pd.concat(
            [
                features,
                pd.DataFrame(
                    {"feature": skipped, "drift_score": None, "stattest": None, "threshold": None, "drifted": None}
                ),
            ],
            ignore_index=True,
        )
    return DriftResult(
        features=features,
        drift_share=share,
        drifted_features=count,
        features_compared=len(compared),
        reference_rows=len(reference),
        current_rows=len(current),
        skipped_features=skipped,
        snapshot=snapshot,
    )


def _severity(row) -> float:
    """How far past (>1) or short of (<1) its threshold a feature's score is, whatever the test's direction."""
    import pandas as pd

    score, threshold, drifted = row["drift_score"], row["threshold"], row["drifted"]
    if pd.isna(score) or pd.isna(threshold) or pd.isna(drifted) or threshold == 0:
        return float("nan")
    lower_means_drift = bool(drifted) == (score < threshold)  # p-value tests drift below, distances above
    if lower_means_drift:
        return float("inf") if score == 0 else threshold / score
    return score / threshold


def ranked_features(features: "pd.DataFrame") -> "pd.DataFrame":
    """Every compared feature, the drifted first and the furthest past its threshold first."""
    ranked = features.dropna(subset=["drifted"]).assign(severity=lambda f: f.apply(_severity, axis=1))
    ranked = ranked.sort_values(["drifted", "severity"], ascending=False)
    return ranked[["feature", "drift_score", "stattest", "threshold", "drifted", "severity"]]


def top_drifted_table(features: "pd.DataFrame", limit: int = 10) -> dg.MarkdownMetadataValue:
    return markdown_preview(ranked_features(features), limit=limit)


def load_window(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> "pd.DataFrame":
    """The drift features of every coin-hour in [start, end)."""
    return query_frame(
        conn,
        f"SELECT coin_id, partition_hour, {', '.join(DRIFT_FEATURES)} FROM features.coin_features WHERE "
        "partition_hour >= $start AND partition_hour < $end",
        {"start": utc_naive(start), "end": utc_naive(end)},
    )


def load_returns(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> "pd.DataFrame":
    """Hourly log returns of every coin in [start, end): what the per-coin CUSUM reads."""
    return query_frame(
        conn,
        "SELECT coin_id, partition_hour, ret_1h FROM features.coin_features "
        "WHERE partition_hour >= $start AND partition_hour < $end",
        {"start": utc_naive(start), "end": utc_naive(end)},
    )


def save_report(snapshot, path: Path, heading: str) -> None:
    """Evidently's HTML report, with a heading naming both windows and the project's rule (its own names neither)."""
    import html

    snapshot.save_html(str(path))
    text = path.read_text()
    banner = (
        '<div style="font-family:sans-serif;padding:12px 16px;background:#f3f4f6;border-bottom:1px solid #d1d5db">'
        f"<b>{html.escape(heading)}</b></div>"
    )
    at = text.find(">", text.find("<body")) + 1 if "<body" in text else 0
    path.write_text(text[:at] + banner + text[at:])


def per_coin_drift(returns: "pd.DataFrame", monitored_start: datetime, config: DriftConfig) -> "pd.DataFrame":
    """The per-coin CUSUM on the monitored days (from ``monitored_start``) against the reference days before."""
    from crypto_assets.ml.coin_drift import coin_drift

    before = returns["partition_hour"] < utc_naive(monitored_start)
    return coin_drift(returns[before], returns[~before], config.cusum_settings())


def coins_drifted(coins: "pd.DataFrame") -> list[str]:
    from crypto_assets.ml.coin_drift import coins_drifted as drifted

    return drifted(coins)


def coin_metadata(coins: "pd.DataFrame | None", drifted: list[str], detected: bool) -> dict[str, Any]:
    """Which coins drifted and their CUSUM statistics, as numbers to plot and a table to read."""
    import math

    if coins is None:
        return {}
    per_coin = coins[coins["coin_id"] != "(market)"]
    top = float(per_coin["cusum"].max()) if len(per_coin) else 0.0
    return {
        "coin_drift_detected": detected,
        "coins_drifted": ", ".join(drifted) or "none",
        "coins_drifted_count": len(drifted),
        "max_coin_cusum": round(top, 4) if not math.isnan(top) else 0.0,
        "coin_cusum": table(coins),
    }


@dg.asset(
    key=FEATURE_DRIFT_KEY,
    deps=[
        dg.AssetDep(
            "coin_features",
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-(90 + 14), end_offset=0, allow_nonexistent_upstream_partitions=True
            ),
        )
    ],
    partitions_def=daily_partitions,
    pool="duckdb_writer",
    group_name="training",
    kinds={"evidently", "duckdb"},
    owners=["team:ml-platform"],
    metadata={"dagster/table_name": "ml.feature_drift"},
    check_specs=[
        dg.AssetCheckSpec(
            DRIFT_CHECK,
            asset=FEATURE_DRIFT_KEY,
            blocking=False,
            description=(
                "The latest day does not drift from the weeks before it (fewer drifted features "
                "than the dataset-level rule allows)."
            ),
        ),
    ],
)
def feature_drift(
    context: dg.AssetExecutionContext, config: DriftConfig, warehouse: Warehouse, reports: Reports
) -> dg.MaterializeResult:
    """Per-feature drift of the latest day against the weeks before it and each champion's training rows.

    Evidently computes the per-feature distances.

    Rows go to ml.feature_drift (one per feature and comparison) and ml.drift_summaries (one per
    comparison, with both windows and the rule), replacing the day's previous rows. The check only
    warns; the drift sensor decides about retraining.
    """
    import pandas as pd

    split_id = context.partition_key
    current_end = utc_naive(context.partition_time_window.end)
    current_start = current_end - timedelta(days=config.current_days)
    reference_start = current_start - timedelta(days=config.reference_days)
    windows = {RECENT_VS_REFERENCE: (reference_start, current_start)}

    # Read everything first and release the file: Evidently takes seconds per report.
    with warehouse.connect() as conn:
        # Rows of two feature specs mean different things: comparing them would be drift by definition.
        refuse_stale_features(conn, reference_start, current_end)
        current = load_window(conn, current_start, current_end)
        references = {RECENT_VS_REFERENCE: load_window(conn, reference_start, current_start)}
        monitored_start = current_end - timedelta(days=config.cusum_days)
        returns = (
            load_returns(conn, monitored_start - timedelta(days=config.reference_days), current_end)
            if config.coin_cusum
            else None
        )
        for family in MODEL_FAMILIES:
            champion = registry.champion(conn, family.name)
            if champion is None or champion.lineage.train_start is None:
                continue
            if champion.feature_spec_version != FEATURE_SPEC_VERSION:
                context.log.warning(
                    f"{family.name}: champion {champion.version_id} was trained on feature spec "
                    f"{champion.feature_spec_version}, not {FEATURE_SPEC_VERSION}: no comparison with its training rows"
                )
                continue
            if utc_naive(champion.lineage.train_end) > current_start:
                # Trained on the days being compared: nothing to learn from comparing them with themselves.
                context.log.info(
                    f"{family.name}: champion {champion.version_id} was trained through the current window"
                )
                continue
            name = f"{CHAMPION_COMPARISON_PREFIX}{family.name}"
            windows[name] = (champion.lineage.train_start, champion.lineage.train_end)
            references[name] = load_window(conn, *windows[name])
    if current.empty or references[RECENT_VS_REFERENCE].empty:
        raise dg.Failure(
            description=(
                f"{split_id}: {len(references[RECENT_VS_REFERENCE])} reference rows "
                f"({reference_start:%Y-%m-%d} .. {current_start:%Y-%m-%d}) "
                f"and {len(current)} current rows: materialize coin_features for "
                f"{reference_start:%Y-%m-%d}...{current_end - timedelta(days=1):%Y-%m-%d} first"
            )
        )

    results: dict[str, DriftResult] = {}
    paths: dict[str, Path] = {}
    for comparison, reference in references.items():
        if reference.empty:
            context.log.warning(f"{comparison}: no rows in {windows[comparison]} any more; comparison skipped")
            continue
        results[comparison] = compute_drift(reference, current, DRIFT_FEATURES, config)
        paths[comparison] = reports.path("feature_drift", split_id, comparison)
        heading = (
            f"Feature drift {split_id}, {comparison}: current {current_start:%Y-%m-%d %H:%M} .. "
            f"{current_end:%Y-%m-%d %H:%M} UTC against reference {windows[comparison][0]:%Y-%m-%d %H:%M} .. "
            f"{windows[comparison][1]:%Y-%m-%d %H:%M} UTC. Rule: {config.rule()}."
        )
        reports.write(paths[comparison], lambda tmp, r=results[comparison], h=heading: save_report(r.snapshot, tmp, h))
        context.log.info(f"{comparison}: drift share {results[comparison].drift_share:.3f}, report {paths[comparison]}")

    main = results[RECENT_VS_REFERENCE]
    dataset_detected = config.detects(main)
    coins = per_coin_drift(returns, monitored_start, config) if returns is not None else None
    drifted_coins = coins_drifted(coins) if coins is not None else []
    coins_detected = len(drifted_coins) >= config.cusum_min_coins
    detected = dataset_detected or coins_detected
    if drifted_coins:
        context.log.info(
            f"per-coin CUSUM past {config.cusum_threshold:g}: {', '.join(drifted_coins)}"
            + ("" if coins_detected else f" (fewer than {config.cusum_min_coins}: no alarm)")
        )

    now = utc_naive(datetime.now(UTC))
    feature_rows = pd.concat(
        [r.features.assign(split_id=split_id, comparison=c) for c, r in results.items()], ignore_index=True
    )
    summaries = pd.DataFrame(
        [
            {
                "split_id": split_id,
                "comparison": c,
                "drift_share": r.drift_share,
                "drifted_features": r.drifted_features,
                "features": r.features_compared,
                "reference_rows": r.reference_rows,
                "current_rows": r.current_rows,
                "report_path": str(paths[c]),
                "created_at": now,
                "reference_start": windows[c][0],
                "reference_end": windows[c][1],
                "current_start": current_start,
                "current_end": current_end,
                "drift_detected": config.detects(r),
                "rule": config.rule(),
            }
            for c, r in results.items()
        ]
    )
    with warehouse.connect() as conn, transaction(conn):
        conn.execute("DELETE FROM ml.feature_drift WHERE split_id = ?", [split_id])
        conn.execute("DELETE FROM ml.drift_summaries WHERE split_id = ?", [split_id])
        insert_frame(conn, "ml.feature_drift", feature_rows)
        insert_frame(conn, "ml.drift_summaries", summaries)

    metadata: dict[str, Any] = {
        "dagster/row_count": len(feature_rows),
        DRIFT_DETECTED_METADATA_KEY: detected,
        "dataset_drift_detected": dataset_detected,
        **coin_metadata(coins, drifted_coins, coins_detected),
        DRIFT_SHARE_METADATA_KEY: float(main.drift_share),
        "drifted_features": int(main.drifted_features),
        "features_compared": int(main.features_compared),
        "rule": config.rule(),
        "current_window": f"{current_start:%Y-%m-%d %H:%M} .. {current_end:%Y-%m-%d %H:%M} UTC "
        f"({main.current_rows} rows)",
        "reference_window": f"{reference_start:%Y-%m-%d %H:%M} .. {current_start:%Y-%m-%d %H:%M} UTC "
        f"({main.reference_rows} rows, sampled)",
        "drifted": top_drifted_table(main.features[main.features["drifted"].fillna(False).astype(bool)], limit=50)
        if main.drifted_features
        else dg.MetadataValue.md("_no feature drifted_"),
        "features": table(ranked_features(main.features)),
        "comparisons": markdown_preview(
            summaries[
                [
                    "comparison",
                    "drift_share",
                    "drifted_features",
                    "features",
                    "drift_detected",
                    "reference_start",
                    "reference_end",
                ]
            ],
            limit=len(summaries),
        ),
        "report": dg.MetadataValue.path(str(paths[RECENT_VS_REFERENCE])),
    }
    for comparison, path in paths.items():
        url = reports.url(path)
        if url:
            metadata["report_url" if comparison == RECENT_VS_REFERENCE else f"report_url/{comparison}"] = (
                dg.MetadataValue.url(url)
            )
    for comparison in results:
        if comparison != RECENT_VS_REFERENCE:
            metadata[f"drift_share/{comparison}"] = float(results[comparison].drift_share)
    if main.skipped_features:
        metadata["skipped_features"] = ", ".join(main.skipped_features)

    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                asset_key=FEATURE_DRIFT_KEY,
                check_name=DRIFT_CHECK,
                passed=not detected,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "drift_share": float(main.drift_share),
                    "drift_share_threshold": float(config.drift_share_threshold),
                    "drifted_features": int(main.drifted_features),
                    "features_compared": int(main.features_compared),
                    **{
                        k: v
                        for k, v in coin_metadata(coins, drifted_coins, coins_detected).items()
                        if k != "coin_cusum"
                    },
                },
                description=(
                    f"{main.drifted_features} of {main.features_compared} features drifted (share "
                    f"{main.drift_share:.3f})"
                    + (f"; coins drifted (CUSUM): {', '.join(drifted_coins)}" if drifted_coins else "")
                    + f"; rule: {config.rule()}"
                ),
            )
        ],
    )
