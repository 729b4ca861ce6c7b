"""What a model family declares, so that the rest of the code can iterate the list of families.

A family is trained by *recipe*: its run config (``config_class``, which has ``train_days``) and its
feature list. The walk-forward evaluation fits the recipe once per evaluated day, and the
registered candidate is the same recipe refit on the latest history. From a family the project
builds its candidate, evaluation and scoring assets, the jobs that select them, the gates' checks,
drift's comparison with the champion's training rows and the live outcomes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from crypto_assets.ml.metrics import classification_metrics

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import dagster as dg
    import numpy as np
    import pandas as pd

    from crypto_assets.ml.baselines import Baseline
    from crypto_assets.ml.models import FittedModel


class ModelFamily:
    """One kind of model: its registry name, recipe, features, truth, metrics, baselines and what it serves."""

    name: ClassVar[str]  # registry name; the family's asset names derive from it
    description: ClassVar[str]  # one sentence, shown on its assets
    kinds: ClassVar[set[str]]  # Dagster kinds of its assets
    config_class: ClassVar[type[dg.Config]]  # the recipe's run config; has train_days
    max_train_days: ClassVar[
        int
    ]  # the most history a recipe may read (config_class's bound): splits look back this far
    features: ClassVar[list[str]]  # model inputs, names from crypto_assets.feature_spec
    baselines: ClassVar[tuple[Baseline, ...]]
    gate_metric: ClassVar[str] = "pr_auc"  # what the comparison gates compare (crypto_assets.ml.evidence.METRICS)
    metric_floor: ClassVar[float]  # default floor of the candidate's pooled out-of-time gate metric
    needs_ground_truth: ClassVar[bool] = False  # evaluated on injected anomalies (never trained on them)
    score_asset: ClassVar[str]  # the serving asset of its hourly scores (rows in serving.model_scores)
    outcome_label: ClassVar[str | None] = None  # the features.coin_labels column its live forecasts are judged on

    @property
    def candidate_asset(self) -> str:
        return f"{self.name}_candidate"

    @property
    def evaluation_asset(self) -> str:
        return f"{self.name}_evaluation"

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
        return classification_metrics(truth, scores, flags)

    def calibration_warning(self, metrics: dict[str, float]) -> str | None:
        """A sentence when the candidate's probabilities are poorly calibrated (families that forecast
        probabilities); None otherwise."""
        return None

    def explain(self, model: FittedModel, frame: pd.DataFrame) -> dict[str, dict[str, float]]:
        """Named feature importances (feature -> value) for the candidate's page; none by default."""
        return {}
