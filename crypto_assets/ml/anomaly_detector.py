"""The anomaly detector: an IsolationForest over features aimed at anomalies, with a robust per-feature
tail score beside it (an ensemble of the two standardized scores), against a z-score baseline."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from crypto_assets.ml.baselines import ZScoreBaseline
from crypto_assets.ml.family import ModelFamily
from crypto_assets.ml.models import AnomalyModel, RobustTails, Standardized

MAX_TRAIN_DAYS = 120

# Hours that are extreme against the coin's own history: jumps and reversals, volume without a
# move, stale feeds, ranges out of proportion. Moves are taken relative to the market, so a
# market-wide storm is not an anomaly of every coin.
FEATURES = [
    "ret_robust_z_168h",
    "max_abs_ret_zscore_6h",
    "reversal_1h",
    "ret_1h_vs_market_zscore",
    "unchanged_price_6h",
    "unchanged_volume_6h",
    "volume_zscore_vs_market",
    "volume_vs_median_168h",
    "volume_without_move",
    "hl_range_vs_median_168h",
]


class AnomalyDetectorConfig(dg.Config):
    train_days: int = Field(
        default=30,
        ge=2,
        le=MAX_TRAIN_DAYS,
        description="Days of history each fit reads (each walk-forward fold, and the registered refit).",
    )
    contamination: float = Field(
        default=0.02, gt=0.0, le=0.5, description="Expected share of anomalies; sets the flag threshold."
    )
    n_estimators: int = Field(default=100, ge=10, le=5000, description="Number of trees.")
    max_samples: int = Field(default=256, ge=16, description="Rows drawn to build each tree.")
    random_state: int = Field(default=7, description="Seed, fixed so training is reproducible.")
    tail_score: bool = Field(
        default=True,
        description="Add the robust per-feature tail score to the forest's (each standardized on its training "
        "scores): catches what is extreme on one feature alone, which the forest averages away.",
    )


class AnomalyDetector(ModelFamily):
    name = "anomaly_detector"
    description = (
        "IsolationForest over features aimed at anomalies (jumps, reversals, volume without a move, stale feeds), "
        "plus a robust per-feature tail score."
    )
    kinds = {"scikit-learn", "duckdb"}
    config_class = AnomalyDetectorConfig
    max_train_days = MAX_TRAIN_DAYS
    features = FEATURES
    baselines = (ZScoreBaseline(),)
    metric_floor = 0.3
    needs_ground_truth = True  # evaluated on injected anomalies; never trained on them
    score_asset = "anomaly_scores"

    def truth(self, frame):
        return frame["is_anomaly"].fillna(False).to_numpy(dtype=bool)

    def fit(self, train, params, features=None):
        import numpy as np
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
        ).fit(matrix := model.matrix(train))
        if config.tail_score:
            model.tails = RobustTails.fit(matrix)
            model.standardized = (
                Standardized.fit(model.forest_scores(matrix)),
                Standardized.fit(model.tails.scores(matrix)),
            )
        # Flag the top `contamination` share of training scores (for the forest alone that is its own
        # offset, negated: IsolationForest's scores are higher for normal points).
        model.threshold = float(np.quantile(model.scores(train), 1 - config.contamination))
        return model

    def expected_flag_rate(self, model):
        return float(model.info["contamination"])
