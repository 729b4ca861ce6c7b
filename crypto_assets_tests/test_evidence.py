"""The evidence gates decide on: PR-AUC, the paired block bootstrap, and its three outcomes."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from crypto_assets.ml import evidence

HOURS = np.repeat(np.arange(24 * 7), 20)  # a week of hours, 20 coins each


def _market(seed: int = 0, positives: float = 0.05):
    rng = np.random.default_rng(seed)
    truth = rng.random(len(HOURS)) < positives
    noise = rng.normal(size=len(HOURS))
    return truth, noise


def test_average_precision_is_sklearns_with_ties_and_weights():
    rng = np.random.default_rng(1)
    truth = rng.random(3000) < 0.1
    scores = np.round(rng.random(3000) + 0.4 * truth, 2)  # rounded: many ties
    weights = rng.integers(0, 4, 3000).astype(float)
    assert evidence.average_precision(truth, scores) == pytest.approx(average_precision_score(truth, scores), abs=1e-12)
    assert evidence.average_precision(truth, scores, weights) == pytest.approx(
        average_precision_score(truth, scores, sample_weight=weights), abs=1e-12
    )
    both = evidence.average_precision(truth, scores, np.vstack([weights, np.ones(3000)]))
    assert both == pytest.approx(
        [average_precision_score(truth, scores, sample_weight=weights), average_precision_score(truth, scores)]
    )


def test_the_bootstrap_draws_whole_hours_in_blocks_of_consecutive_hours():
    weights = evidence.hour_draws(HOURS, replicates=50, block_hours=24, seed=3)
    assert weights.shape == (50, len(HOURS))
    per_hour = weights.reshape(50, -1, 20)
    assert (per_hour == per_hour[:, :, :1]).all()  # every coin of an hour comes along
    counts = per_hour[:, :, 0]
    assert (counts.sum(axis=1) == 24 * 7).all()  # as many hours as the window holds
    # circular blocks: a drawn hour's successor is drawn as often, except at block edges
    same_as_next = (counts[:, :-1] == counts[:, 1:]).mean()
    assert same_as_next > 0.8
    assert not np.array_equal(evidence.hour_draws(HOURS, 50, 24, seed=4), weights)
    assert np.array_equal(evidence.hour_draws(HOURS, 50, 24, seed=3), weights)  # a fixed seed decides the same


def test_a_candidate_identical_to_its_baseline_never_passes():
    truth, noise = _market()
    scores = noise + 2.0 * truth
    for margin in (0.0, 0.01):
        result = evidence.compare(
            comparator="persistence",
            truth=truth,
            hours=HOURS,
            candidate_scores=scores,
            other_scores=scores.copy(),
            margin=margin,
            min_positives=30,
            replicates=300,
        )
        assert result.difference == 0.0 and result.ci_low == 0.0 and result.ci_high == 0.0
        assert result.outcome == evidence.FAILED and "not above the margin" in result.why


def test_a_clearly_better_candidate_passes_with_an_interval_above_the_margin():
    truth, noise = _market(seed=2)
    weak = noise + 0.5 * truth
    strong = noise + 3.0 * truth
    result = evidence.compare(
        comparator="har",
        truth=truth,
        hours=HOURS,
        candidate_scores=strong,
        other_scores=weak,
        margin=0.05,
        min_positives=30,
        replicates=500,
    )
    assert result.outcome == evidence.PASSED
    assert result.ci_low > 0.05 and result.ci_low < result.difference < result.ci_high
    assert "90% CI [" in result.sentence() and "passed" in result.sentence()
    # and the other way round it fails
    worse = evidence.compare(
        comparator="har",
        truth=truth,
        hours=HOURS,
        candidate_scores=weak,
        other_scores=strong,
        margin=0.0,
        min_positives=30,
        replicates=500,
    )
    assert worse.outcome == evidence.FAILED and worse.ci_high < 0


def test_too_few_positives_is_inconclusive_however_good_the_candidate_looks():
    truth = np.zeros(len(HOURS), dtype=bool)
    truth[[5, 500, 1000, 2000]] = True
    perfect = truth.astype(float)
    result = evidence.compare(
        comparator="zscore",
        truth=truth,
        hours=HOURS,
        candidate_scores=perfect,
        other_scores=np.zeros(len(HOURS)),
        margin=0.0,
        min_positives=30,
    )
    assert result.outcome == evidence.INCONCLUSIVE
    assert result.candidate == 1.0 and np.isnan(result.ci_low)
    assert "4 positives, fewer than the 30 required" in result.why


def test_a_draw_without_positives_cannot_pass_silently():
    truth = np.zeros(len(HOURS), dtype=bool)
    truth[HOURS < 3] = True  # all 60 positives in the first three hours: most resamples miss them
    result = evidence.compare(
        comparator="zscore",
        truth=truth,
        hours=HOURS,
        candidate_scores=truth.astype(float),
        other_scores=np.zeros(len(HOURS)),
        margin=0.0,
        min_positives=30,
        replicates=200,
    )
    assert result.outcome == evidence.INCONCLUSIVE and "drew no positive" in result.why


def test_rows_one_model_did_not_score_make_the_comparison_inconclusive():
    # A champion that could not score some rows is not "beaten" on them: the models were not compared on the same rows.
    truth, noise = _market(seed=5)
    other = noise + 0.5 * truth
    other[:100] = np.nan
    result = evidence.compare(
        comparator="champion",
        truth=truth,
        hours=HOURS,
        candidate_scores=noise + 3.0 * truth,
        other_scores=other,
        margin=0.0,
        min_positives=30,
        replicates=200,
    )
    assert result.outcome == evidence.INCONCLUSIVE and "100 of the rows have no score" in result.why


def test_metrics_of_scores_that_are_not_numbers_are_undefined_not_a_crash():
    # So the evaluation reaches its no_nan_scores gate, which fails, instead of crashing before it.
    from crypto_assets.ml.metrics import ranking_metrics

    truth, noise = _market(seed=6)
    noise[7] = np.nan
    assert all(np.isnan(v) for v in ranking_metrics(truth, noise).values())
