"""Scoring feature rows with a fitted model: the one code path of batch and on-demand scoring.

The hourly scoring assets (``crypto_assets/assets/serving.py``) score every coin-hour of a day,
and the prediction service (``POST /v1/score``, ``crypto_assets/serve.py``) scores one coin-hour
from a request; both call :func:`score_rows`, so a served score is the score batch scoring would
store for the same features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crypto_assets.ml.models import FittedModel

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import numpy as np
    import pandas as pd


def score_rows(model: FittedModel, features: pd.DataFrame) -> tuple[np.ndarray | list, np.ndarray | list]:
    """(scores, flags) of ``model`` on the rows of ``features`` (columns named as in the feature spec).

    ``model.scores`` runs once: where a model keeps ``FittedModel.flags`` (scores at or above its
    threshold), the flags are that comparison of the same scores; a model that overrides ``flags``
    has it called. A frame without rows gives two empty lists: estimators refuse to predict nothing.
    """
    if not len(features):
        return [], []
    scores = model.scores(features)
    if type(model).flags is FittedModel.flags:
        return scores, scores >= model.threshold
    return scores, model.flags(features)
