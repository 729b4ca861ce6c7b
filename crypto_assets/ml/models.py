"""Fitted models: small picklable wrappers that the registry stores and scoring loads.

Each wraps an estimator (or a rule) with what scoring needs: the features it reads, in order, and
its decision threshold. ``scores`` is higher for "more likely positive"; ``flags`` compares it
with the threshold. Batch scoring, evaluation and on-demand scoring all call these two methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import numpy as np
    import pandas as pd


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
    """An imputer and IsolationForest pipeline, scored tree by tree without joblib (``ml/isolation_forest.py``)."""

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        from crypto_assets.ml.isolation_forest import anomaly_scores, scorer

        # -score_samples (IsolationForest's is higher for normal points): higher = more anomalous.
        prepared = self.__dict__.get("_scorer")
        if prepared is None:
            prepared = self.__dict__["_scorer"] = scorer(self.estimator)
        return anomaly_scores(prepared, self.matrix(frame))

    def __getstate__(self) -> dict:
        # The scorer is a cache: the stored artifact (and its sha256) stays the fitted pipeline alone.
        return {k: v for k, v in self.__dict__.items() if k != "_scorer"}


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


@dataclass
class LargestAbsoluteValue(FittedModel):
    """A rule, no estimator: the largest absolute value among its features (missing counts as 0)."""

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        import numpy as np

        return np.nan_to_num(np.abs(self.matrix(frame)), nan=0.0).max(axis=1)


@dataclass
class FeatureValue(FittedModel):
    """A rule, no estimator: the value of its one feature (missing counts as 0)."""

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        import numpy as np

        return np.nan_to_num(self.matrix(frame)[:, 0], nan=0.0)
