"""The volatility model: LightGBM forecasting a volatility spike in the next 6 hours, against persistence and HAR."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from crypto_assets.feature_spec import FEATURE_NAMES
from crypto_assets.ml.baselines import HarBaseline, PersistenceBaseline
from crypto_assets.ml.family import ModelFamily
from crypto_assets.ml.metrics import best_f1_threshold, calibration_metrics
from crypto_assets.ml.models import ProbabilityModel

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import pandas as pd

MAX_TRAIN_DAYS = 120

# Every feature but the day-of-week encodings: with weeks of history each weekday appears a handful
# of times and a model would learn which days happened to be stormy. The hour of day stays:
# intraday seasonality of volatility is real and every hour appears every day.
FEATURES = [name for name in FEATURE_NAMES if name not in ("dow_sin", "dow_cos")]


class VolatilityModelConfig(dg.Config):
    train_days: int = Field(
        default=60,
        ge=2,
        le=MAX_TRAIN_DAYS,
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


def time_ordered_validation(train: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first (1 - fraction) of train's hours to fit on, and the rest to tune the threshold on."""
    import numpy as np

    hours = np.sort(train["partition_hour"].unique())
    cut = hours[min(int(len(hours) * (1 - fraction)), len(hours) - 1)]
    return train[train["partition_hour"] < cut], train[train["partition_hour"] >= cut]


class VolatilitySpikeModel(ModelFamily):
    name = "volatility_model"
    description = (
        "LightGBM classifier forecasting a volatility spike in the next 6 hours, "
        "from HAR, range, market and volume features."
    )
    kinds = {"lightgbm", "duckdb"}
    config_class = VolatilityModelConfig
    max_train_days = MAX_TRAIN_DAYS
    features = FEATURES
    baselines = (PersistenceBaseline(), HarBaseline())
    metric_floor = 0.15  # 1.5x the share of spikes (the label's threshold is a 90th percentile)
    # Calibration is reported and warned about, not gated: ranking decides promotion, these say whether the
    # probabilities can be read as probabilities.
    max_ece = 0.05
    min_brier_skill = 0.0
    score_asset = "volatility_forecasts"
    outcome_label = "volatility_spike"

    def usable_rows(self, frame):
        return frame[frame["volatility_spike"].notna()]

    def truth(self, frame):
        return frame["volatility_spike"].astype(bool).to_numpy()

    def fit(self, train, params, features=None):
        import lightgbm as lgb

        config = VolatilityModelConfig(**params)
        fit_rows, validation = time_ordered_validation(
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
        model.threshold = best_f1_threshold(self.truth(validation), model.scores(validation))
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
            **calibration_metrics(truth, np.asarray(scores, dtype=float)),
        }

    def calibration_warning(self, metrics: dict[str, float]) -> str | None:
        """A sentence when the candidate's probabilities are poorly calibrated, else None."""
        problems = []
        if metrics.get("ece", 0.0) > self.max_ece:
            problems.append(f"expected calibration error {metrics['ece']:.3f} > {self.max_ece}")
        if metrics.get("brier_skill", 1.0) < self.min_brier_skill:
            problems.append(
                f"Brier skill {metrics['brier_skill']:.3f} < {self.min_brier_skill} (worse than the base rate)"
            )
        return "poorly calibrated: " + "; ".join(problems) if problems else None

    def explain(self, model, frame):
        """Gain importances, and mean |contribution| from pred_contrib on at most 2,000 rows (it is slow on more)."""
        import numpy as np

        booster = model.estimator.booster_
        gain = dict(zip(model.features, booster.feature_importance(importance_type="gain").tolist(), strict=True))
        sample = frame.sample(n=min(2000, len(frame)), random_state=0) if len(frame) else frame
        if not len(sample):
            return {"gain_importance": gain}
        contributions = booster.predict(model.matrix(sample), pred_contrib=True)
        mean_abs = np.abs(contributions[:, :-1]).mean(axis=0).tolist()
        return {"gain_importance": gain, "mean_abs_contribution": dict(zip(model.features, mean_abs, strict=True))}
