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

    ours = model.forest_scores(model.matrix(scored))
    theirs = -model.estimator.score_samples(model.matrix(scored))

    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    forest_only = family.fit(train, {**params, "tail_score": False})
    np.testing.assert_allclose(forest_only.scores(scored), theirs, rtol=0, atol=1e-12)
    assert np.array_equal(forest_only.flags(scored), theirs >= forest_only.threshold)
    one_row = model.scores(scored.iloc[[11]])  # what POST /v1/score computes
    np.testing.assert_allclose(one_row, model.scores(scored)[[11]], rtol=0, atol=1e-12)


def test_the_cache_never_reaches_the_stored_artifact():
    family = AnomalyDetector()
    model = family.fit(_frame(400, seed=4, features=family.features), {"train_days": 7, "n_estimators": 20})
    before = pickle.dumps(model)
    model.scores(_frame(10, seed=5, features=family.features))
    assert "_scorer" in model.__dict__
    assert pickle.dumps(model) == before  # same bytes, same sha256: a re-run registers nothing new


def test_the_ensemble_flags_its_share_and_catches_an_extreme_of_one_feature():
    family = AnomalyDetector()
    train = _frame(3000, seed=6, features=family.features)
    params = {"train_days": 7, "contamination": 0.02}
    model, forest_only = family.fit(train, params), family.fit(train, {**params, "tail_score": False})
    assert model.flags(train).mean() == pytest.approx(0.02, abs=0.002)  # the flag rate it was asked for

    # Ordinary rows, and the same rows with one feature far out in its tail (the others typical).
    scored = _frame(400, seed=7, features=family.features)
    extreme = scored.copy()
    extreme[family.features[5]] = 40.0  # t(3) rows: this is beyond every training value
    assert model.tails.scores(model.matrix(extreme)).min() > 1  # past the training 99th percentile
    assert model.flags(extreme).mean() > 0.95
    # The forest alone, over ten features, misses most of them: what the tail score is there for.
    assert forest_only.flags(extreme).mean() < 0.5

    # A missing value is not evidence; an artifact from before the ensemble scores as the forest.
    assert model.tails.scores(np.full((1, len(family.features)), np.nan))[0] == 0
    for attribute in ("tails", "standardized"):  # an artifact pickled before the ensemble has neither
        del forest_only.__dict__[attribute]
    legacy = pickle.loads(pickle.dumps(forest_only))
    np.testing.assert_allclose(legacy.scores(scored), legacy.forest_scores(legacy.matrix(scored)), rtol=0, atol=0)
