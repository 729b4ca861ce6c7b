"""The evidence a gate decides on: PR-AUC differences with a paired, time-respecting bootstrap interval.

Candidate and comparator are scored on exactly the same out-of-time rows. The rows are resampled
in contiguous blocks of hours (a circular block bootstrap over the hours of the window, via
``arch.bootstrap``), every coin of a drawn hour coming along, and the same draw serves both models:
the interval is of the paired difference and respects the autocorrelation of hourly markets.

Outcomes:
- ``passed``: the lower bound of the interval is above the margin;
- ``failed``: it is not;
- ``inconclusive``: fewer positives than required, so the difference means nothing yet. A gate
  fails on it, and says so; it never passes on no evidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import numpy as np


PASSED, FAILED, INCONCLUSIVE = "passed", "failed", "inconclusive"


@dataclass(frozen=True)
class Comparison:
    """Candidate against one comparator on the same rows."""

    comparator: str
    metric: str
    candidate: float
    other: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    margin: float
    positives: int
    rows: int
    hours: int
    outcome: str
    why: str

    def as_dict(self) -> dict:
        return asdict(self)

    def sentence(self) -> str:
        """One line for a promotion event, a log or the UI."""
        return (
            f"{self.metric} vs {self.comparator}: {self.candidate:.4f} - {self.other:.4f} = {self.difference:+.4f}, "
            f"{self.confidence:.0%} CI [{self.ci_low:+.4f}, {self.ci_high:+.4f}], margin {self.margin:+.4f}, "
            f"{self.positives} positives in {self.rows} rows: {self.outcome}" + (f" ({self.why})" if self.why else "")
        )


def average_precision(truth: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray | float:
    """PR-AUC as average precision (sklearn's definition, ties grouped), for one or many row weightings.

    ``weights`` of shape (n,) or (replicates, n) count each row that many times (a bootstrap
    draw); None is all ones. Returns a float, or one value per replicate (NaN without positives).
    """
    import numpy as np

    truth = np.asarray(truth, dtype=float)
    scores = np.asarray(scores, dtype=float)
    single = weights is None or np.ndim(weights) == 1
    w = np.ones((1, len(truth))) if weights is None else np.atleast_2d(np.asarray(weights, dtype=float))
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_truth = scores[order], truth[order]
    # The last row of each run of equal scores: precision is taken there, as at a threshold.
    ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    w = w[:, order]
    true_positives = np.cumsum(w * sorted_truth, axis=1)[:, ends]
    flagged = np.cumsum(w, axis=1)[:, ends]
    positives = true_positives[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(flagged > 0, true_positives / flagged, 0.0)
        gained = np.diff(true_positives, axis=1, prepend=0.0)
        ap = np.where(positives[:, 0] > 0, (gained * precision).sum(axis=1) / positives[:, 0], np.nan)
    return float(ap[0]) if single else ap


# Metrics a gate can compare: each takes (truth, scores, weights) and accepts a (replicates, rows)
# weight matrix, so one call scores every bootstrap draw.
METRICS = {"pr_auc": average_precision}


def hour_draws(hours: np.ndarray, replicates: int, block_hours: int, seed: int) -> np.ndarray:
    """Bootstrap row weights: (replicates, rows), each row drawn as often as its hour was.

    Hours are resampled in circular blocks of ``block_hours`` consecutive hours of the window.
    """
    import numpy as np
    from arch.bootstrap import CircularBlockBootstrap

    distinct, hour_of_row = np.unique(hours, return_inverse=True)
    bootstrap = CircularBlockBootstrap(min(block_hours, len(distinct)), np.arange(len(distinct)), seed=seed)
    weights = np.empty((replicates, len(hours)))
    for i, (draw, _) in enumerate(bootstrap.bootstrap(replicates)):
        weights[i] = np.bincount(draw[0], minlength=len(distinct))[hour_of_row]
    return weights


def compare(
    *,
    comparator: str,
    metric: str = "pr_auc",
    truth: np.ndarray,
    hours: np.ndarray,
    candidate_scores: np.ndarray,
    other_scores: np.ndarray,
    margin: float,
    min_positives: int,
    confidence: float = 0.9,
    replicates: int = 1000,
    block_hours: int = 24,
    seed: int = 0,
    draws: np.ndarray | None = None,
) -> Comparison:
    """Candidate minus comparator PR-AUC on the same rows, with a paired block-bootstrap interval."""
    import numpy as np

    truth = np.asarray(truth, dtype=bool)
    positives, rows = int(truth.sum()), len(truth)
    score = METRICS[metric]
    candidate = score(truth, candidate_scores)
    other = score(truth, other_scores)
    n_hours = len(np.unique(hours)) if rows else 0
    base = {
        "comparator": comparator,
        "metric": metric,
        "candidate": candidate,
        "other": other,
        "difference": candidate - other,
        "confidence": confidence,
        "margin": margin,
        "positives": positives,
        "rows": rows,
        "hours": n_hours,
    }
    unscored = int(
        np.isnan(np.asarray(candidate_scores, dtype=float)).sum()
        + np.isnan(np.asarray(other_scores, dtype=float)).sum()
    )
    if positives < min_positives or positives == rows or unscored:
        why = (
            f"{positives} positives, fewer than the {min_positives} required"
            if positives < min_positives
            else "every row is positive"
            if positives == rows
            else f"{unscored} of the rows have no score from one of the two models: not compared on the same rows"
        )
        return Comparison(**base, ci_low=float("nan"), ci_high=float("nan"), outcome=INCONCLUSIVE, why=why)
    weights = draws if draws is not None else hour_draws(hours, replicates, block_hours, seed)
    differences = np.concatenate(
        [
            score(truth, candidate_scores, chunk) - score(truth, other_scores, chunk)
            for chunk in np.array_split(weights, max(1, len(weights) // 100))
        ]
    )
    valid = differences[~np.isnan(differences)]
    if len(valid) < 0.9 * len(differences):
        return Comparison(
            **base,
            ci_low=float("nan"),
            ci_high=float("nan"),
            outcome=INCONCLUSIVE,
            why=f"{len(differences) - len(valid)} of {len(differences)} resamples drew no positive",
        )
    tail = (1 - confidence) / 2 * 100
    low, high = (float(v) for v in np.percentile(valid, [tail, 100 - tail]))
    outcome = PASSED if low > margin else FAILED
    why = "" if outcome == PASSED else f"lower bound {low:+.4f} is not above the margin {margin:+.4f}"
    return Comparison(**base, ci_low=low, ci_high=high, outcome=outcome, why=why)
