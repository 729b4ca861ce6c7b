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
class RobustTails:
    """How far each feature is out in its own training tail; a row scores its farthest feature.

    Per feature: the distance from the training median in robust units (1.4826 x the median absolute
    deviation), over the 99th percentile of that distance on the training rows, so 1 is "as far out
    as the top 1% of training". It catches what is extreme on one feature alone, which a forest over
    ten features averages away. Missing values score 0.
    """

    center: np.ndarray
    scale: np.ndarray
    reference: np.ndarray

    @classmethod
    def fit(cls, matrix: np.ndarray) -> RobustTails:
        import numpy as np

        columns = [c[np.isfinite(c)] for c in matrix.T]
        center = np.array([np.median(c) if len(c) else 0.0 for c in columns])
        spread = [np.median(np.abs(c - m)) if len(c) else 0.0 for c, m in zip(columns, center, strict=True)]
        mad = 1.4826 * np.array(spread)
        scale = np.where(mad > 0, mad, 1.0)  # a feature constant on most rows (a count of 0): raw units
        distance = [np.abs(c - m) / s for c, m, s in zip(columns, center, scale, strict=True)]
        reference = np.array([np.quantile(d, 0.99) if len(d) else 0.0 for d in distance])
        return cls(center, scale, np.where(reference > 0, reference, 1.0))

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        import numpy as np

        distance = np.abs(matrix - self.center) / self.scale / self.reference
        return np.nan_to_num(distance, nan=0.0).max(axis=1) if matrix.shape[1] else np.zeros(len(matrix))


@dataclass(frozen=True)
class Standardized:
    """A score minus its training median, over its training 99th percentile minus that median."""

    median: float
    p99: float

    @classmethod
    def fit(cls, scores: np.ndarray) -> Standardized:
        import numpy as np

        median, p99 = float(np.median(scores)), float(np.quantile(scores, 0.99))
        return cls(median, p99 if p99 > median else median + 1.0)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return (scores - self.median) / (self.p99 - self.median)


@dataclass
class AnomalyModel(FittedModel):
    """An imputer and IsolationForest pipeline, scored tree by tree without joblib (``ml/isolation_forest.py``).

    With ``tails`` it is an ensemble: the forest's score and the robust tail score, each
    standardized on its training scores, summed. Without (versions registered before the
    ensemble), the forest's score alone.
    """

    tails: RobustTails | None = None
    standardized: tuple[Standardized, Standardized] | None = None  # (forest, tails)

    def forest_scores(self, matrix: np.ndarray) -> np.ndarray:
        from crypto_assets.ml.isolation_forest import anomaly_scores, scorer

        # -score_samples (IsolationForest's is higher for normal points): higher = more anomalous.
        prepared = self.__dict__.get("_scorer")
        if prepared is None:
            prepared = self.__dict__["_scorer"] = scorer(self.estimator)
        return anomaly_scores(prepared, matrix)

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        matrix = self.matrix(frame)
        forest = self.forest_scores(matrix)
        tails, standardized = self.__dict__.get("tails"), self.__dict__.get("standardized")
        if tails is None or standardized is None:
            return forest
        return standardized[0](forest) + standardized[1](tails.scores(matrix))

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
