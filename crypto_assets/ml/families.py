"""Model families: how each model trains and scores, what it is measured on, and the baselines it must beat.

A family is trained by *recipe*: its run config (``params``) and its feature list. The walk-forward
evaluation fits the recipe once per evaluated day, and the registered candidate is the same recipe
refit on the latest history. Adding a model is one ``ModelFamily`` here and one line in
``MODEL_FAMILIES``; the assets are built from the list.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import dagster as dg
from pydantic import Field

from crypto_assets.feature_spec import ANOMALY_DETECTOR_FEATURES, HAR_FEATURES, VOLATILITY_MODEL_FEATURES

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import numpy as np
    import pandas as pd

# --- fitted models: small picklable wrappers stored in the registry --------------------------


@dataclass
class FittedModel:
    """A trained estimator plus what scoring needs: its features and its decision threshold."""

    estimator: Any
    features: list[str]
    threshold: float
    info: dict = field(default_factory=dict)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"frame lacks the model's features: {', '.join(missing)}")
        return frame[self.features].to_numpy(dtype=float)

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def flags(self, frame: pd.DataFrame) -> np.ndarray:
        return self.scores(frame) >= self.threshold


@dataclass
class AnomalyModel(FittedModel):
    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        # IsolationForest's score_samples is higher for normal points; negate so higher = more anomalous.
        return -self.estimator.score_samples(self.matrix(frame))


@dataclass
class ProbabilityModel(FittedModel):
    """A classifier whose score is the probability of the positive class."""

    log_inputs: bool = False  # HAR models log realized volatility

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        import numpy as np

        values = super().matrix(frame)
        return np.log(np.clip(values, 1e-3, None)) if self.log_inputs else values

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        return self.estimator.predict_proba(self.matrix(frame))[:, 1]


# --- run config: a recipe's parameters ---------------------------------------------------------


class AnomalyDetectorConfig(dg.Config):
    train_days: int = Field(
        default=30,
        ge=2,
        le=120,
        description="Days of history each fit reads (each walk-forward fold, and the registered refit).",
    )
    contamination: float = Field(
        default=0.02, gt=0.0, le=0.5, description="Expected share of anomalies; sets the flag threshold."
    )
    n_estimators: int = Field(default=100, ge=10, le=5000, description="Number of trees.")
    max_samples: int = Field(default=256, ge=16, description="Rows drawn to build each tree.")
    random_state: int = Field(default=7, description="Seed, fixed so training is reproducible.")


class VolatilityModelConfig(dg.Config):
    train_days: int = Field(
        default=60,
        ge=2,
        le=120,
        description="Days of history each fit reads (each walk-forward fold, and the registered refit).",
    )
    # Many shallow trees: the signal is pooled across coins and weeks, and deep trees learn the
    # particular storms of the training window (measured with benchmarks/model_quality.py).
    n_estimators: int = Field(default=200, ge=10, le=10000, description="Boosting rounds.")
    learning_rate: float = Field(default=0.05, gt=0.0, le=1.0, description="Shrinkage per round.")
    num_leaves: int = Field(default=4, ge=2, le=1024, description="Maximum leaves per tree.")
    min_child_samples: int = Field(default=300, ge=1, description="Minimum rows in a leaf.")
    colsample_bytree: float = Field(default=0.8, gt=0.0, le=1.0, description="Share of features each tree sees.")
    validation_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=0.5,
        description="Share at the end of train (by time) used to tune the decision threshold; never evaluated rows.",
    )
    random_state: int = Field(default=7, description="Seed, fixed so training is reproducible.")


# --- metrics -----------------------------------------------------------------------------------


def ranking_metrics(truth: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from crypto_assets.ml.evidence import average_precision

    if truth.sum() == 0 or truth.sum() == len(truth) or not np.isfinite(scores).all():
        # Undefined: no contrast, or scores that are not numbers (the no_nan_scores gate says which).
        return {"pr_auc": float("nan"), "roc_auc": float("nan")}
    return {"pr_auc": float(average_precision(truth, scores)), "roc_auc": float(roc_auc_score(truth, scores))}


def scoring_latency_ms_per_1000(score, frame: pd.DataFrame) -> float:
    started = time.perf_counter()
    score(frame)
    return 1000.0 * (time.perf_counter() - started) / max(len(frame), 1) * 1000


def _best_f1_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the best F1 on a validation slice (0.5 when it has no positives)."""
    import numpy as np
    from sklearn.metrics import precision_recall_curve

    if truth.sum() == 0:
        return 0.5
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
    return float(thresholds[int(np.argmax(f1))])


def _time_ordered_validation(train: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first (1 - fraction) of train's hours to fit on, and the rest to tune the threshold on."""
    import numpy as np

    hours = np.sort(train["partition_hour"].unique())
    cut = hours[min(int(len(hours) * (1 - fraction)), len(hours) - 1)]
    return train[train["partition_hour"] < cut], train[train["partition_hour"] >= cut]


# --- baselines ---------------------------------------------------------------------------------


class Baseline:
    """A competitor the candidate must beat: a rule, or a simple model fitted the way the candidate is."""

    name: ClassVar[str]
    description: ClassVar[str]

    def fit(self, train: pd.DataFrame, truth: np.ndarray) -> FittedModel | None:
        """A fitted model for one fold, or None for a rule that needs no fitting."""
        return None

    def scores(self, model: FittedModel | None, frame: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError


class PersistenceBaseline(Baseline):
    name = "persistence"
    description = "The next 6 hours are as volatile as the last 6: rv_6h over the label's own threshold."

    def scores(self, model, frame):
        return frame["rv_6h_vs_p90_168h"].fillna(0.0).to_numpy(dtype=float)


class HarBaseline(Baseline):
    name = "har"
    description = (
        "Logistic HAR (Corsi 2009): the spike label on log hourly, 6-hour, daily and weekly realized volatility."
    )

    def fit(self, train, truth):
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = ProbabilityModel(None, list(HAR_FEATURES), threshold=0.5, log_inputs=True)
        model.estimator = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(max_iter=1000),
        ).fit(model.matrix(train), truth.astype(int))
        return model

    def scores(self, model, frame):
        return model.scores(frame)


class ZScoreBaseline(Baseline):
    name = "zscore"
    description = "A rolling z-score detector: the larger of |return z| and |volume z| against the trailing day."

    def scores(self, model, frame):
        import numpy as np

        return (
            np.fmax(frame["ret_zscore_24h"].abs(), frame["volume_zscore_24h"].abs()).fillna(0.0).to_numpy(dtype=float)
        )


# --- families ----------------------------------------------------------------------------------


class GateConfig(dg.Config):
    """How the quality gates on an evaluation decide (see crypto_assets/ml/evidence.py)."""

    min_pr_auc: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="The candidate's pooled out-of-time PR-AUC must reach this; empty means the model family's floor.",
    )
    baseline_margin: float = Field(
        default=0.0,
        ge=-1.0,
        le=1.0,
        description="beats_baseline: the interval's lower bound of PR-AUC(candidate) - PR-AUC(baseline) must exceed this, for every baseline.",
    )
    champion_margin: float = Field(
        default=-0.02,
        ge=-1.0,
        le=1.0,
        description="beats_champion: the lower bound of PR-AUC(candidate) - PR-AUC(champion) must exceed this. Negative: not credibly worse (a fresher fit of an equal recipe passes); positive: a credible gain.",
    )
    min_positives: int = Field(
        default=30,
        ge=1,
        description="Fewer positives in the evaluation window make every comparison inconclusive: the gate fails, saying so.",
    )
    confidence: float = Field(default=0.9, gt=0.5, lt=1.0, description="Coverage of the bootstrap interval.")
    bootstrap_replicates: int = Field(
        default=1000, ge=100, le=100_000, description="Resamples of the paired block bootstrap."
    )
    block_hours: int = Field(
        default=24, ge=1, le=24 * 14, description="Length of the resampled blocks of consecutive hours."
    )
    seed: int = Field(default=0, description="Seed of the bootstrap draws, fixed so a re-run decides the same.")
    max_flag_rate_ratio: float = Field(
        default=5.0, gt=1.0, description="Flag rate may be at most this many times the expected rate."
    )
    min_flag_rate_ratio: float = Field(
        default=0.1, gt=0.0, lt=1.0, description="Flag rate must be at least this fraction of the expected rate."
    )


class ModelFamily:
    """One kind of model: its registry name, recipe config, features, truth, metrics and baselines."""

    name: ClassVar[str]
    config_class: ClassVar[type[dg.Config]]
    kinds: ClassVar[set[str]]
    description: ClassVar[str]
    features: ClassVar[list[str]]
    baselines: ClassVar[tuple[Baseline, ...]]
    pr_auc_floor: ClassVar[float]  # default quality floor for the pooled out-of-time PR-AUC
    needs_ground_truth: ClassVar[bool] = False

    def usable_rows(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows that can be trained or evaluated on (for a supervised model: the labeled ones)."""
        return frame

    def truth(self, frame: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def fit(self, train: pd.DataFrame, params: dict, features: list[str] | None = None) -> FittedModel:
        raise NotImplementedError

    def expected_flag_rate(self, model: FittedModel) -> float:
        raise NotImplementedError

    def metrics(self, truth: np.ndarray, scores: np.ndarray, flags: np.ndarray) -> dict[str, float]:
        positives = int(truth.sum())
        return {
            **ranking_metrics(truth, scores),
            "flagged_rate": float(flags.mean()) if len(flags) else float("nan"),
            "precision_at_flags": float(truth[flags].mean()) if flags.any() else float("nan"),
            "recall_at_flags": float(truth[flags].sum() / positives) if positives else float("nan"),
            "positives": float(positives),
            "rows": float(len(truth)),
        }

    def explain(self, model: FittedModel, frame: pd.DataFrame) -> dict[str, dict[str, float]]:
        return {}


class AnomalyDetector(ModelFamily):
    name = "anomaly_detector"
    config_class = AnomalyDetectorConfig
    kinds = {"scikit-learn", "duckdb"}
    description = (
        "IsolationForest over features aimed at anomalies (jumps, reversals, volume without a move, stale feeds)."
    )
    features = ANOMALY_DETECTOR_FEATURES
    baselines = (ZScoreBaseline(),)
    pr_auc_floor = 0.3
    needs_ground_truth = True  # evaluated on injected anomalies; never trained on them

    def truth(self, frame):
        return frame["is_anomaly"].fillna(False).to_numpy(dtype=bool)

    def fit(self, train, params, features=None):
        from sklearn.ensemble import IsolationForest
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline

        config = AnomalyDetectorConfig(**params)
        model = AnomalyModel(
            None, list(features or self.features), threshold=0.0, info={"contamination": config.contamination}
        )
        model.estimator = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            IsolationForest(
                n_estimators=config.n_estimators,
                max_samples=min(config.max_samples, len(train)),
                contamination=config.contamination,
                random_state=config.random_state,
            ),
        ).fit(model.matrix(train))
        # Flag the top `contamination` share of training scores: the forest's own offset is that
        # percentile of its training scores (higher = more normal there, so negated here).
        model.threshold = float(-model.estimator[-1].offset_)
        return model

    def expected_flag_rate(self, model):
        return float(model.info["contamination"])


class VolatilitySpikeModel(ModelFamily):
    name = "volatility_model"
    config_class = VolatilityModelConfig
    kinds = {"lightgbm", "duckdb"}
    description = "LightGBM classifier forecasting a volatility spike in the next 6 hours, from HAR, range, market and volume features."
    features = VOLATILITY_MODEL_FEATURES
    baselines = (PersistenceBaseline(), HarBaseline())
    pr_auc_floor = 0.15  # 1.5x the share of spikes (the label's threshold is a 90th percentile)

    def usable_rows(self, frame):
        return frame[frame["volatility_spike"].notna()]

    def truth(self, frame):
        return frame["volatility_spike"].astype(bool).to_numpy()

    def fit(self, train, params, features=None):
        import lightgbm as lgb

        config = VolatilityModelConfig(**params)
        fit_rows, validation = _time_ordered_validation(
            train.sort_values(["partition_hour", "coin_id"]), config.validation_fraction
        )
        model = ProbabilityModel(None, list(features or self.features), threshold=0.5)
        model.estimator = lgb.LGBMClassifier(
            n_estimators=config.n_estimators,
            learning_rate=config.learning_rate,
            num_leaves=config.num_leaves,
            min_child_samples=config.min_child_samples,
            colsample_bytree=config.colsample_bytree,
            # Two threads, fixed: with deterministic=True the trees are the same on every run.
            random_state=config.random_state,
            n_jobs=2,
            deterministic=True,
            force_col_wise=True,
            verbose=-1,
        ).fit(model.matrix(fit_rows), self.truth(fit_rows).astype(int))
        model.threshold = _best_f1_threshold(self.truth(validation), model.scores(validation))
        model.info = {"validation_rows": len(validation), "fit_rows": len(fit_rows)}
        return model

    def expected_flag_rate(self, model):
        return 0.1  # the label's threshold is the trailing 90th percentile

    def metrics(self, truth, scores, flags):
        import numpy as np
        from sklearn.metrics import f1_score

        return {
            **super().metrics(truth, scores, flags),
            "f1": float(f1_score(truth, flags, zero_division=0.0)),
            "brier": float(np.mean((np.clip(scores, 0.0, 1.0) - truth.astype(float)) ** 2))
            if len(truth)
            else float("nan"),
        }

    def explain(self, model, frame):
        """Gain importances, and mean |contribution| from pred_contrib on at most 2,000 rows (it is slow on more)."""
        import numpy as np

        booster = model.estimator.booster_
        gain = dict(zip(model.features, booster.feature_importance(importance_type="gain").tolist()))
        sample = frame.sample(n=min(2000, len(frame)), random_state=0) if len(frame) else frame
        if not len(sample):
            return {"gain_importance": gain}
        contributions = booster.predict(model.matrix(sample), pred_contrib=True)
        return {
            "gain_importance": gain,
            "mean_abs_contribution": dict(zip(model.features, np.abs(contributions[:, :-1]).mean(axis=0).tolist())),
        }


MODEL_FAMILIES: list[ModelFamily] = [AnomalyDetector(), VolatilitySpikeModel()]
FAMILIES_BY_NAME = {f.name: f for f in MODEL_FAMILIES}
