"""Walk-forward evaluation: every evaluated day is predicted by a model that saw only the past.

For split day D with an evaluation window of ``evaluation_days`` days, the fold of day d trains on
the ``train_days`` days before d minus the embargo (so no training label looks into d) and
predicts d. Candidate recipe and fitted baselines are fitted on each fold's training rows; rule
baselines score the same rows; all are scored on exactly the same out-of-time rows. The refit fold
is the recipe trained on the ``train_days`` days up to the end of D: the version that is registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import pandas as pd

    from crypto_assets.ml.family import ModelFamily
    from crypto_assets.ml.models import FittedModel

# Fold and role names in ml.walk_forward_scores: the refit fold is the registered model's; the
# registered role holds that model's scores on the evaluation rows, kept to check it reproduces them.
REFIT = "refit"
CANDIDATE = "candidate"
CHAMPION = "champion"
REGISTERED = "registered"


@dataclass(frozen=True)
class Fold:
    """One fold: what it trains on and (unless it is the refit) the day it predicts. Naive UTC times."""

    name: str  # the evaluated day, YYYY-MM-DD, or "refit"
    train_start: datetime
    train_end: datetime
    evaluate_start: datetime | None = None
    evaluate_end: datetime | None = None


def plan_folds(day_start: datetime, *, evaluation_days: int, train_days: int, embargo_hours: int) -> list[Fold]:
    """The evaluation folds of the days ending with ``day_start``'s day, then the refit fold."""
    folds = []
    for back in range(evaluation_days - 1, -1, -1):
        start = day_start - timedelta(days=back)
        train_end = start - timedelta(hours=embargo_hours)
        folds.append(
            Fold(
                f"{start:%Y-%m-%d}", train_end - timedelta(days=train_days), train_end, start, start + timedelta(days=1)
            )
        )
    day_end = day_start + timedelta(days=1)
    folds.append(Fold(REFIT, day_end - timedelta(days=train_days), day_end))
    return folds


def rows_between(frame: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    hours = frame["partition_hour"]
    return frame[(hours >= start) & (hours < end)]


def walk_forward(
    family: ModelFamily,
    frame: pd.DataFrame,
    folds: list[Fold],
    params: dict,
    features: list[str] | None = None,
    *,
    role: str = CANDIDATE,
    with_baselines: bool = True,
) -> pd.DataFrame:
    """Out-of-time scores of the recipe (and the family's baselines) on every evaluation fold.

    One row per evaluated coin-hour and role: coin_id, partition_hour, fold, role, score, flagged
    (NULL for baselines), truth. Folds without training or evaluation rows are skipped.
    """
    import pandas as pd

    parts = []
    for fold in folds:
        if fold.evaluate_start is None:
            continue
        train = family.usable_rows(rows_between(frame, fold.train_start, fold.train_end))
        evaluate = family.usable_rows(rows_between(frame, fold.evaluate_start, fold.evaluate_end))
        if train.empty or evaluate.empty:
            continue
        keys = evaluate[["coin_id", "partition_hour"]].assign(fold=fold.name, truth=family.truth(evaluate))
        model = family.fit(train, params, features)
        parts.append(keys.assign(role=role, score=model.scores(evaluate), flagged=model.flags(evaluate)))
        if with_baselines:
            train_truth = family.truth(train)
            for baseline in family.baselines:
                fitted = baseline.fit(train, train_truth)
                parts.append(keys.assign(role=baseline.name, score=fitted.scores(evaluate), flagged=None))
    if not parts:
        return pd.DataFrame(columns=["coin_id", "partition_hour", "fold", "truth", "role", "score", "flagged"])
    return pd.concat(parts, ignore_index=True)


def refit(family: ModelFamily, frame: pd.DataFrame, fold: Fold, params: dict) -> tuple[FittedModel, pd.DataFrame]:
    """The recipe fitted on the refit fold's rows: the model that is registered, and the rows it saw."""
    train = family.usable_rows(rows_between(frame, fold.train_start, fold.train_end))
    if train.empty:
        raise ValueError(f"no usable training rows between {fold.train_start} and {fold.train_end}")
    return family.fit(train, params), train


def frame_sha256(frame: pd.DataFrame, columns: list[str]) -> str:
    """A hash of exactly what a model was trained on: the rows' keys and the given columns, in row order."""
    import hashlib

    import numpy as np
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame[["coin_id", "partition_hour", *columns]], index=False)
    return hashlib.sha256(np.asarray(hashed).tobytes()).hexdigest()
