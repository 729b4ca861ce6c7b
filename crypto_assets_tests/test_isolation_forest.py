"""The IsolationForest scorer gives scikit-learn's scores, so batch, evaluation and the service agree with it."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from crypto_assets.ml.anomaly_detector import AnomalyDetector


def _frame(rows: int, seed: int, features: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.standard_t(df=3, size=(rows, len(features)))
    values[rng.random(values.shape) < 0.05] = np.nan  # missing values, imputed with the training median
    frame = pd.DataFrame(values, columns=features)
    frame[features[0]] = np.nan  # a feature missing in every training row (imputed as 0)
    frame[features[1]] = np.round(frame[features[1]], 1)  # ties at split thresholds
    return frame


@pytest.mark.parametrize(
    "params",
    [
        {"train_days": 7},
        {"train_days": 7, "n_estimators": 37, "max_samples": 64, "random_state": 3},
        {"train_days": 7, "n_estimators": 10, "max_samples": 2000},  # max_samples capped by the rows
    ],
)
def test_scores_equal_scikit_learns_score_samples(params):
    family = AnomalyDetector()
    train = _frame(1500, seed=1, features=family.features)
    model = family.fit(train, params)
    scored = _frame(3000, seed=2, features=family.features)  # more rows than one block
    scored.iloc[7] = np.nan  # a row with nothing observed

    ours = model.scores(scored)
    theirs = -model.estimator.score_samples(model.matrix(scored))

    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert np.array_equal(model.flags(scored), theirs >= model.threshold)
    one_row = model.scores(scored.iloc[[11]])  # what POST /v1/score computes
    np.testing.assert_allclose(one_row, theirs[[11]], rtol=0, atol=1e-12)


def test_the_cache_never_reaches_the_stored_artifact():
    family = AnomalyDetector()
    model = family.fit(_frame(400, seed=4, features=family.features), {"train_days": 7, "n_estimators": 20})
    before = pickle.dumps(model)
    model.scores(_frame(10, seed=5, features=family.features))
    assert "_scorer" in model.__dict__
    assert pickle.dumps(model) == before  # same bytes, same sha256: a re-run registers nothing new
