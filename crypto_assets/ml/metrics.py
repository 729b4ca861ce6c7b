"""Metrics every family reports: ranking quality (PR-AUC, ROC-AUC), flag rates, and scoring latency."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import numpy as np
    import pandas as pd


def ranking_metrics(truth: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from crypto_assets.ml.evidence import average_precision

    if truth.sum() == 0 or truth.sum() == len(truth) or not np.isfinite(scores).all():
        # Undefined: no contrast, or scores that are not numbers (the no_nan_scores gate says which).
        return {"pr_auc": float("nan"), "roc_auc": float("nan")}
    return {"pr_auc": float(average_precision(truth, scores)), "roc_auc": float(roc_auc_score(truth, scores))}


def classification_metrics(truth: np.ndarray, scores: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    """Ranking metrics plus what the flags catch: flagged share, precision and recall at the flags."""
    positives = int(truth.sum())
    return {
        **ranking_metrics(truth, scores),
        "flagged_rate": float(flags.mean()) if len(flags) else float("nan"),
        "precision_at_flags": float(truth[flags].mean()) if flags.any() else float("nan"),
        "recall_at_flags": float(truth[flags].sum() / positives) if positives else float("nan"),
        "positives": float(positives),
        "rows": float(len(truth)),
    }


def scoring_latency_ms_per_1000(score, frame: pd.DataFrame) -> float:
    started = time.perf_counter()
    score(frame)
    return 1000.0 * (time.perf_counter() - started) / max(len(frame), 1) * 1000


def best_f1_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the best F1 on a validation slice (0.5 when it has no positives)."""
    import numpy as np
    from sklearn.metrics import precision_recall_curve

    if truth.sum() == 0:
        return 0.5
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
    return float(thresholds[int(np.argmax(f1))])


def top_share_flags(scores: np.ndarray, count: int) -> np.ndarray:
    """Flags on the ``count`` highest scores (earlier rows first among ties): another model at the same flag rate."""
    import numpy as np

    flags = np.zeros(len(scores), dtype=bool)
    if count > 0:
        order = np.argsort(-np.nan_to_num(np.asarray(scores, dtype=float), nan=-np.inf), kind="stable")
        flags[order[:count]] = True
    return flags


def recall_by_kind(kinds: pd.Series, events: pd.Series, flags: dict[str, np.ndarray]) -> pd.DataFrame:
    """Recall of each kind of anomaly at each set of flags: the share of its hours flagged, and of its events
    with at least one hour flagged.

    ``kinds`` and ``events`` give per row the anomaly's kind and event id (missing on normal rows);
    ``flags`` maps a role to its boolean flags on the same rows. Kinds are taken as they come, so a
    generator's kinds need not be known here. One row per kind, by kind, with ``rows`` and ``events``.
    """
    import numpy as np
    import pandas as pd

    kinds = pd.Series(kinds).reset_index(drop=True)
    events = pd.Series(events).reset_index(drop=True)
    anomalous = kinds.notna().to_numpy()
    columns = ["kind", "rows", "events"] + [f"{r}_{m}" for r in flags for m in ("recall", "event_recall")]
    out = []
    for kind in sorted(kinds[anomalous].astype(str).unique()):
        mine = anomalous & (kinds.astype(str) == kind).to_numpy()
        row = {"kind": kind, "rows": int(mine.sum()), "events": int(events[mine].nunique())}
        for role, flagged in flags.items():
            flagged = np.asarray(flagged, dtype=bool)
            row[f"{role}_recall"] = float(flagged[mine].mean())
            found = pd.Series(flagged[mine]).groupby(events[mine].to_numpy()).any()
            row[f"{role}_event_recall"] = float(found.mean())
        out.append(row)
    return pd.DataFrame(out, columns=columns)


def calibration_metrics(truth: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> dict[str, float]:
    """How far forecast probabilities are from observed frequencies.

    ``brier``: mean squared error of the probabilities; ``brier_skill``: 1 - brier / the brier of
    always forecasting the observed base rate (0: no better than the base rate, < 0: worse);
    ``ece``: expected calibration error, the row-weighted mean |mean forecast - observed share| over
    ``bins`` equal-width probability bins.
    """
    import numpy as np

    truth = np.asarray(truth, dtype=float)
    p = np.clip(np.asarray(probabilities, dtype=float), 0.0, 1.0)
    if not len(truth) or not np.isfinite(p).all():
        return {"brier": float("nan"), "brier_skill": float("nan"), "ece": float("nan")}
    brier = float(np.mean((p - truth) ** 2))
    base = float(truth.mean())
    reference = base * (1 - base)
    which = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, weights=p, minlength=bins) - np.bincount(which, weights=truth, minlength=bins))
    return {
        "brier": brier,
        "brier_skill": float(1 - brier / reference) if reference > 0 else float("nan"),
        "ece": float(gap.sum() / counts.sum()),
    }
