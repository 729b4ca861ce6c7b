"""Baselines: the competitors a candidate must beat on the same out-of-time rows.

Each baseline fits (or, for a rule, simply wraps) a :class:`~crypto_assets.ml.models.FittedModel`
on a fold's training rows, with a flag threshold from those rows, so baselines score, flag and can
be registered exactly like a model: the strongest one serves as champion of last resort while no
model has passed its gates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from crypto_assets.ml.metrics import best_f1_threshold
from crypto_assets.ml.models import FeatureValue, FittedModel, LargestAbsoluteValue, ProbabilityModel

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import numpy as np
    import pandas as pd

# The HAR baseline (Corsi 2009): hourly, 6-hour, daily and weekly realized volatility components.
HAR_FEATURES = ["rv_1h_vs_p90_168h", "rv_6h_vs_p90_168h", "rv_24h_vs_p90_168h", "rv_168h_vs_p90_168h"]


class Baseline:
    """A competitor the candidate must beat: a rule, or a simple model fitted the way the candidate is."""

    name: ClassVar[str]
    features: ClassVar[list[str]]

    def fit(self, train: pd.DataFrame, truth: np.ndarray) -> FittedModel:
        raise NotImplementedError


class PersistenceBaseline(Baseline):
    """The next 6 hours are as volatile as the last 6: rv_6h over the label's own threshold."""

    name = "persistence"
    features = ["rv_6h_vs_p90_168h"]

    def fit(self, train, truth):
        # Flag when the last 6 hours were already above the spike threshold.
        return FeatureValue(None, list(self.features), threshold=1.0)


class HarBaseline(Baseline):
    """Logistic HAR (Corsi 2009): the spike label on log hourly, 6-hour, daily and weekly realized volatility."""

    name = "har"
    features = HAR_FEATURES

    def fit(self, train, truth):
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = ProbabilityModel(None, list(self.features), threshold=0.5, log_inputs=True)
        model.estimator = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(max_iter=1000),
        ).fit(model.matrix(train), truth.astype(int))
        model.threshold = best_f1_threshold(truth, model.scores(train))
        return model


class ZScoreBaseline(Baseline):
    """A rolling z-score detector: the larger of |return z| and |volume z| against the trailing day."""

    name = "zscore"
    features = ["ret_zscore_24h", "volume_zscore_24h"]

    flag_share = 0.02  # flags the top 2% of its training scores, the detector's default contamination

    def fit(self, train, truth):
        import numpy as np

        model = LargestAbsoluteValue(None, list(self.features), threshold=0.0, info={"contamination": self.flag_share})
        model.threshold = float(np.quantile(model.scores(train), 1 - self.flag_share)) if len(train) else 0.0
        return model
