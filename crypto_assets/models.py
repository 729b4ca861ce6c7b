"""Model families: how each model trains, scores, and is measured against its baseline.

Adding a model is one ``ModelFamily`` subclass here plus one line in
``crypto_assets/assets/models.py``. sklearn and lightgbm are imported inside the methods that
use them, so the code location loads fast.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from crypto_assets.feature_spec import MODEL_FEATURES


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
class VolatilityModel(FittedModel):
    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        return self.estimator.predict_proba(self.matrix(frame))[:, 1]


# --- run config --------------------------------------------------------------------------------


class AnomalyDetectorConfig(dg.Config):
    contamination: float = Field(default=0.01, gt=0.0, le=0.5, description="Expected share of anomalies; sets the flag threshold.")
    n_estimators: int = Field(default=200, ge=10, le=5000, description="Number of trees.")
    max_samples: int = Field(default=256, ge=16, description="Rows drawn to build each tree.")
    random_state: int = Field(default=7, description="Seed, fixed so training is reproducible.")


class VolatilityModelConfig(dg.Config):
    n_estimators: int = Field(default=200, ge=10, le=10000, description="Boosting rounds.")
    learning_rate: float = Field(default=0.03, gt=0.0, le=1.0, description="Shrinkage per round.")
    num_leaves: int = Field(default=15, ge=2, le=1024, description="Maximum leaves per tree.")
    min_child_samples: int = Field(default=100, ge=1, description="Minimum rows in a leaf.")
    colsample_bytree: float = Field(default=0.8, gt=0.0, le=1.0, description="Share of features each tree sees.")
    validation_fraction: float = Field(
        default=0.2, gt=0.0, lt=0.5, description="Share at the end of train (by time) used to tune the decision threshold; never the holdout."
    )
    random_state: int = Field(default=7, description="Seed, fixed so training is reproducible.")


class GateConfig(dg.Config):
    """Thresholds of the quality gates on a model evaluation."""

    min_pr_auc: float | None = Field(
        default=None, ge=0.0, le=1.0, description="The candidate's PR-AUC on the holdout must reach this; empty means the model family's floor."
    )
    min_improvement_over_baseline: float = Field(default=0.0, ge=0.0, description="PR-AUC margin the candidate needs over the baseline.")
    min_improvement_over_champion: float = Field(default=0.005, ge=0.0, description="PR-AUC margin the candidate needs over the champion.")
    max_flag_rate_ratio: float = Field(default=5.0, gt=1.0, description="Flag rate may be at most this many times the expected rate.")
    min_flag_rate_ratio: float = Field(default=0.1, gt=0.0, lt=1.0, description="Flag rate must be at least this fraction of the expected rate.")


# --- metrics -----------------------------------------------------------------------------------


def _ranking_metrics(truth: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if truth.sum() == 0 or truth.sum() == len(truth):
        return {"pr_auc": float("nan"), "roc_auc": float("nan")}
    return {"pr_auc": float(average_precision_score(truth, scores)), "roc_auc": float(roc_auc_score(truth, scores))}


def scoring_latency_ms_per_1000(score, frame: pd.DataFrame) -> float:
    started = time.perf_counter()
    score(frame)
    return 1000.0 * (time.perf_counter() - started) / max(len(frame), 1) * 1000


# --- families ----------------------------------------------------------------------------------


class ModelFamily:
    """One kind of model: its registry name, run config, training, truth, metrics and baseline."""

    name: ClassVar[str]
    config_class: ClassVar[type[dg.Config]]
    kinds: ClassVar[set[str]]
    description: ClassVar[str]
    baseline_name: ClassVar[str]
    pr_auc_floor: ClassVar[float]  # default quality floor for the holdout PR-AUC

    def training_rows(self, train: pd.DataFrame) -> pd.DataFrame:
        return train

    def fit(self, train: pd.DataFrame, config: dg.Config) -> FittedModel:
        raise NotImplementedError

    def truth(self, holdout: pd.DataFrame) -> np.ndarray:
        """Binary truth for each holdout row (the holdout frame already carries what is needed)."""
        raise NotImplementedError

    def evaluation_rows(self, holdout: pd.DataFrame) -> pd.DataFrame:
        return holdout

    def baseline_scores(self, frame: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def baseline_flags(self, frame: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def expected_flag_rate(self, model: FittedModel) -> float:
        raise NotImplementedError

    def metrics(self, truth: np.ndarray, scores: np.ndarray, flags: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def explain(self, model: FittedModel, frame: pd.DataFrame) -> dict[str, dict[str, float]]:
        return {}


class AnomalyDetector(ModelFamily):
    name = "anomaly_detector"
    config_class = AnomalyDetectorConfig
    kinds = {"scikit-learn", "duckdb"}
    description = "IsolationForest over the feature spec, flagging unusual coin-hours."
    baseline_name = "zscore_detector"
    pr_auc_floor = 0.3

    def fit(self, train: pd.DataFrame, config: AnomalyDetectorConfig) -> AnomalyModel:
        from sklearn.ensemble import IsolationForest
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline

        pipeline = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            IsolationForest(
                n_estimators=config.n_estimators,
                max_samples=min(config.max_samples, len(train)),
                contamination=config.contamination,
                random_state=config.random_state,
            ),
        )
        pipeline.fit(train[MODEL_FEATURES].to_numpy(dtype=float))
        model = AnomalyModel(pipeline, list(MODEL_FEATURES), threshold=0.0, info={"contamination": config.contamination})
        # Flag the top `contamination` share of training scores.
        model.threshold = float(np.quantile(model.scores(train), 1 - config.contamination))
        return model

    def truth(self, holdout: pd.DataFrame) -> np.ndarray:
        return holdout["is_anomaly"].fillna(False).to_numpy(dtype=bool)

    def baseline_scores(self, frame: pd.DataFrame) -> np.ndarray:
        # A rolling z-score detector: the larger of |return z| and |volume z| against the trailing day.
        return np.fmax(frame["ret_zscore_24h"].abs(), frame["volume_zscore_24h"].abs()).fillna(0.0).to_numpy()

    def baseline_flags(self, frame: pd.DataFrame) -> np.ndarray:
        return self.baseline_scores(frame) > 4.0

    def expected_flag_rate(self, model: FittedModel) -> float:
        return float(model.info["contamination"])

    def metrics(self, truth: np.ndarray, scores: np.ndarray, flags: np.ndarray) -> dict[str, float]:
        budget = max(1, int(round(flags.mean() * len(flags)))) if len(flags) else 1
        top = np.argsort(-scores, kind="stable")[:budget]
        positives = int(truth.sum())
        return {
            **_ranking_metrics(truth, scores),
            "precision_at_k": float(truth[top].mean()) if len(top) else float("nan"),
            "recall_at_budget": float(truth[top].sum() / positives) if positives else float("nan"),
            "flagged_rate": float(flags.mean()) if len(flags) else float("nan"),
            "positives": float(positives),
        }


class VolatilitySpikeModel(ModelFamily):
    name = "volatility_model"
    config_class = VolatilityModelConfig
    kinds = {"lightgbm", "duckdb"}
    description = "LightGBM classifier forecasting a volatility spike in the next 6 hours."
    baseline_name = "persistence"
    pr_auc_floor = 0.12  # about 1.5x the share of spikes

    def training_rows(self, train: pd.DataFrame) -> pd.DataFrame:
        return train[train["volatility_spike"].notna()]

    def evaluation_rows(self, holdout: pd.DataFrame) -> pd.DataFrame:
        return holdout[holdout["volatility_spike"].notna()]

    def fit(self, train: pd.DataFrame, config: VolatilityModelConfig) -> VolatilityModel:
        import lightgbm as lgb

        train = train.sort_values(["partition_hour", "coin_id"])
        hours = train["partition_hour"].sort_values().unique()
        cut = hours[int(len(hours) * (1 - config.validation_fraction))]
        fit_rows, validation = train[train["partition_hour"] < cut], train[train["partition_hour"] >= cut]
        estimator = lgb.LGBMClassifier(
            n_estimators=config.n_estimators,
            learning_rate=config.learning_rate,
            num_leaves=config.num_leaves,
            min_child_samples=config.min_child_samples,
            colsample_bytree=config.colsample_bytree,
            random_state=config.random_state,
            n_jobs=1,
            deterministic=True,
            verbose=-1,
        )
        estimator.fit(fit_rows[MODEL_FEATURES].to_numpy(dtype=float), fit_rows["volatility_spike"].astype(int).to_numpy())
        model = VolatilityModel(estimator, list(MODEL_FEATURES), threshold=0.5)
        model.threshold = _best_f1_threshold(validation["volatility_spike"].astype(bool).to_numpy(), model.scores(validation))
        model.info = {"validation_rows": len(validation), "validation_from": str(cut), "fit_rows": len(fit_rows)}
        return model

    def truth(self, holdout: pd.DataFrame) -> np.ndarray:
        return holdout["volatility_spike"].astype(bool).to_numpy()

    def baseline_scores(self, frame: pd.DataFrame) -> np.ndarray:
        # Persistence: the next 6 hours will be as volatile as the last 6, compared with the same
        # past-only threshold the label uses.
        return (frame["rv_6h"] / frame["vol_threshold"]).fillna(0.0).to_numpy()

    def baseline_flags(self, frame: pd.DataFrame) -> np.ndarray:
        return self.baseline_scores(frame) > 1.0

    def expected_flag_rate(self, model: FittedModel) -> float:
        return 0.1  # the label's threshold is the trailing 90th percentile

    def metrics(self, truth: np.ndarray, scores: np.ndarray, flags: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import f1_score

        probability = np.clip(scores, 0.0, 1.0) if scores.max(initial=0) <= 1.0 else flags.astype(float)
        return {
            **_ranking_metrics(truth, scores),
            "f1": float(f1_score(truth, flags, zero_division=0.0)),
            "brier": float(np.mean((probability - truth.astype(float)) ** 2)) if len(truth) else float("nan"),
            "flagged_rate": float(flags.mean()) if len(flags) else float("nan"),
            "positives": float(truth.sum()),
        }

    def explain(self, model: FittedModel, frame: pd.DataFrame) -> dict[str, dict[str, float]]:
        """Gain importances, and mean |contribution| from pred_contrib on at most 2,000 rows (it is slow on more)."""
        booster = model.estimator.booster_
        gain = dict(zip(model.features, booster.feature_importance(importance_type="gain").tolist()))
        sample = frame.sample(n=min(2000, len(frame)), random_state=0) if len(frame) else frame
        contributions = booster.predict(model.matrix(sample), pred_contrib=True) if len(sample) else np.zeros((0, len(model.features) + 1))
        mean_abs = dict(zip(model.features, np.abs(contributions[:, :-1]).mean(axis=0).tolist())) if len(sample) else {}
        return {"gain_importance": gain, "mean_abs_contribution": mean_abs}


def _best_f1_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the best F1 on a validation slice (0.5 when it has no positives)."""
    from sklearn.metrics import precision_recall_curve

    if truth.sum() == 0:
        return 0.5
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
    return float(thresholds[int(np.argmax(f1))])


MODEL_FAMILIES: list[ModelFamily] = [AnomalyDetector(), VolatilitySpikeModel()]
FAMILIES_BY_NAME = {f.name: f for f in MODEL_FAMILIES}
