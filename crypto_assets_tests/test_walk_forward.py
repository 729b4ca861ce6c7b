"""Walk-forward: every evaluated day is predicted by a model that saw only the days before it minus the embargo."""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from crypto_assets.feature_spec import LABEL_HORIZON_HOURS
from crypto_assets.ml.family import ModelFamily
from crypto_assets.ml.models import FittedModel
from crypto_assets.ml.walk_forward import REFIT, frame_sha256, plan_folds, refit, walk_forward

DAY = datetime(2026, 3, 14)


class _Recorded(FittedModel):
    def scores(self, frame):
        return np.arange(len(frame), dtype=float)


class RecordingFamily(ModelFamily):
    """Fits nothing; remembers what each fit was given."""

    name = "recording"
    features = ["x"]
    baselines = ()

    def __init__(self):
        self.fits: list[pd.DataFrame] = []

    def usable_rows(self, frame):
        return frame[frame["label"].notna()]

    def truth(self, frame):
        return frame["label"].astype(bool).to_numpy()

    def fit(self, train, params, features=None):
        self.fits.append(train)
        return _Recorded(None, ["x"], threshold=1e9)


def hourly_rows(days: int = 80, coins: int = 3) -> pd.DataFrame:
    hours = pd.date_range(DAY - timedelta(days=days), DAY + timedelta(days=1), freq="h", inclusive="left")
    frame = pd.DataFrame([(c, h) for h in hours for c in range(coins)], columns=["coin_id", "partition_hour"])
    return frame.assign(x=np.arange(len(frame), dtype=float), label=(np.arange(len(frame)) % 7 == 0))


def test_folds_predict_each_day_of_the_window_from_the_past_minus_the_embargo():
    folds = plan_folds(DAY, evaluation_days=7, train_days=30, embargo_hours=LABEL_HORIZON_HOURS)
    evaluated = folds[:-1]
    assert [f.name for f in evaluated] == [f"2026-03-{d:02d}" for d in range(8, 15)]
    for fold in evaluated:
        assert fold.evaluate_end - fold.evaluate_start == timedelta(days=1)
        assert fold.evaluate_start - fold.train_end == timedelta(hours=LABEL_HORIZON_HOURS)
        assert fold.train_end - fold.train_start == timedelta(days=30)
    assert (
        folds[-1].name == REFIT and folds[-1].train_end == DAY + timedelta(days=1) and folds[-1].evaluate_start is None
    )


def test_no_fit_sees_an_hour_whose_label_reaches_into_the_day_it_predicts():
    family = RecordingFamily()
    frame = hourly_rows()
    folds = plan_folds(DAY, evaluation_days=7, train_days=30, embargo_hours=LABEL_HORIZON_HOURS)
    scores = walk_forward(family, frame, folds, params={})
    assert len(family.fits) == 7
    for fold, train in zip(folds[:-1], family.fits, strict=True):
        # the last training hour's label looks LABEL_HORIZON_HOURS ahead: it must end before the predicted day
        assert train["partition_hour"].max() + timedelta(hours=LABEL_HORIZON_HOURS) < fold.evaluate_start
        assert train["partition_hour"].min() >= fold.train_start
        predicted = scores[scores["fold"] == fold.name]
        assert predicted["partition_hour"].min() == fold.evaluate_start
        assert predicted["partition_hour"].max() < fold.evaluate_end
    # every labeled hour of the window is scored exactly once
    window = frame[(frame["partition_hour"] >= folds[0].evaluate_start) & frame["label"].notna()]
    assert len(scores) == len(window) and not scores.duplicated(["coin_id", "partition_hour"]).any()
    assert scores["truth"].sum() == window["label"].sum()


def test_folds_without_history_are_skipped_not_fitted_on_nothing():
    family = RecordingFamily()
    frame = hourly_rows(days=3)  # data begins 2026-03-11: the folds before 03-12 have no training rows
    folds = plan_folds(DAY, evaluation_days=7, train_days=30, embargo_hours=6)
    scores = walk_forward(family, frame, folds, params={})
    assert len(family.fits) == 3 and all(len(train) for train in family.fits)
    assert set(scores["fold"]) == {"2026-03-12", "2026-03-13", "2026-03-14"}


def test_the_refit_reads_the_last_train_days_and_its_hash_names_exactly_those_rows():
    family = RecordingFamily()
    frame = hourly_rows()
    fold = plan_folds(DAY, evaluation_days=7, train_days=30, embargo_hours=6)[-1]
    _, train = refit(family, frame, fold, params={})
    assert train["partition_hour"].min() == DAY + timedelta(days=1) - timedelta(days=30)
    assert train["partition_hour"].max() == DAY + timedelta(hours=23)
    digest = frame_sha256(train, ["x"])
    assert digest == frame_sha256(train.copy(), ["x"])
    changed = train.copy()
    changed.iloc[5, changed.columns.get_loc("x")] += 1.0
    assert frame_sha256(changed, ["x"]) != digest
