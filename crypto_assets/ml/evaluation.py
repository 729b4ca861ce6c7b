"""A candidate's walk-forward evidence summarized: metrics by role, and the evidence the gates decide on.

The candidate's out-of-time scores are compared with every baseline's and the champion's on exactly
the same rows (``crypto_assets/ml/evidence.py``); the registered artifact, reloaded, must reproduce
the scores stored when it was registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from crypto_assets.ml import evidence
from crypto_assets.ml.gates import Evidence, GateConfig
from crypto_assets.ml.metrics import scoring_latency_ms_per_1000
from crypto_assets.ml.walk_forward import CANDIDATE, CHAMPION, REGISTERED

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import numpy as np
    import pandas as pd

    from crypto_assets.ml.family import ModelFamily
    from crypto_assets.ml.models import FittedModel
    from crypto_assets.registry import ModelVersion

# Metrics kept for roles that do not flag (baselines, champion): flag rates would mean nothing.
RANKING_ONLY = ("pr_auc", "roc_auc", "positives", "rows")


@dataclass(frozen=True)
class ArtifactCheck:
    """The registered artifact, verified and reloaded: does it reproduce its stored scores?"""

    verified: bool  # its bytes match the recorded sha256
    reproduced: bool  # reloaded, it gives the scores stored at registration
    latency_ms_per_1000_rows: float
    expected_flag_rate: float


@dataclass(frozen=True)
class Evaluation:
    evidence: Evidence
    roles: dict[str, dict[str, float]]  # role (candidate, a baseline, champion) -> metric -> value
    rows: int
    hours: int
    recall_by_kind: pd.DataFrame | None = None  # families evaluated on injected anomalies: recall per kind


def check_artifact(
    family: ModelFamily, model: FittedModel | None, rows: pd.DataFrame, scores: pd.DataFrame
) -> ArtifactCheck:
    """Score the evaluation rows with the reloaded artifact (None: it failed verification) and compare with the "
    "stored scores."""
    import numpy as np
    import pandas as pd

    registered = scores[scores["role"] == REGISTERED]
    if model is None:
        return ArtifactCheck(False, False, float("nan"), float("nan"))
    if registered.empty:
        return ArtifactCheck(True, False, float("nan"), family.expected_flag_rate(model))
    again = pd.Series(model.scores(rows), index=pd.MultiIndex.from_frame(rows[["coin_id", "partition_hour"]]))
    expected = registered.set_index(["coin_id", "partition_hour"])["score"]
    again = again.reindex(expected.index)
    return ArtifactCheck(
        verified=True,
        reproduced=bool(np.allclose(again.to_numpy(dtype=float), expected.to_numpy(dtype=float), equal_nan=False)),
        latency_ms_per_1000_rows=scoring_latency_ms_per_1000(model.scores, rows),
        expected_flag_rate=family.expected_flag_rate(model),
    )


def aligned(scores: pd.DataFrame, role: str, keys: pd.DataFrame) -> np.ndarray:
    """``role``'s scores on exactly ``keys``' rows, in their order (NaN where it has none)."""
    import pandas as pd

    found = scores[scores["role"] == role].set_index(["coin_id", "partition_hour"])["score"]
    return found.reindex(pd.MultiIndex.from_frame(keys[["coin_id", "partition_hour"]])).to_numpy(dtype=float)


def kind_recall(family: ModelFamily, scores: pd.DataFrame, kinds: pd.DataFrame) -> pd.DataFrame:
    """Recall per kind of injected anomaly on the candidate's out-of-time rows: at the candidate's own flags, and
    for each baseline at the same number of flags (its top scores), so the kinds are compared at one flag rate.

    ``kinds``: coin_id, partition_hour, anomaly_kind, anomaly_id of the anomalous coin-hours.
    """
    from crypto_assets.ml.metrics import recall_by_kind, top_share_flags

    rows = scores[scores["role"] == CANDIDATE].reset_index(drop=True)
    labeled = rows[["coin_id", "partition_hour"]].merge(kinds, on=["coin_id", "partition_hour"], how="left")
    flags = {CANDIDATE: rows["flagged"].eq(True).to_numpy()}
    count = int(flags[CANDIDATE].sum())
    for baseline in family.baselines:
        flags[baseline.name] = top_share_flags(aligned(scores, baseline.name, rows), count)
    return recall_by_kind(labeled["anomaly_kind"], labeled["anomaly_id"], flags)


def evaluate_candidate(
    family: ModelFamily,
    config: GateConfig,
    candidate: ModelVersion,
    scores: pd.DataFrame,
    champion_note: str,
    artifact: ArtifactCheck,
    kinds: pd.DataFrame | None = None,
) -> Evaluation:
    """Metrics and comparisons of one candidate on its walk-forward ``scores`` (with the champion's, if any)."""
    import numpy as np

    rows = scores[scores["role"] == CANDIDATE].reset_index(drop=True)
    truth = rows["truth"].to_numpy(dtype=bool)
    hours = rows["partition_hour"].to_numpy()
    candidate_scores = rows["score"].to_numpy(dtype=float)
    flags = rows["flagged"].fillna(False).to_numpy(dtype=bool)
    draws = (
        evidence.hour_draws(hours, config.bootstrap_replicates, config.block_hours, config.seed) if len(rows) else None
    )

    def versus(role: str, margin: float) -> evidence.Comparison:
        return evidence.compare(
            comparator=role,
            metric=family.gate_metric,
            truth=truth,
            hours=hours,
            candidate_scores=candidate_scores,
            other_scores=aligned(scores, role, rows),
            margin=margin,
            min_positives=config.min_positives,
            confidence=config.confidence,
            draws=draws,
        )

    has_champion = (scores["role"] == CHAMPION).any()
    no_flags = np.zeros(len(rows), dtype=bool)
    roles = {CANDIDATE: family.metrics(truth, candidate_scores, flags)}
    for role in [b.name for b in family.baselines] + ([CHAMPION] if has_champion else []):
        metrics = family.metrics(truth, aligned(scores, role, rows), no_flags)
        roles[role] = {k: v for k, v in metrics.items() if k in RANKING_ONLY}
    roles[CANDIDATE]["latency_ms_per_1000_rows"] = artifact.latency_ms_per_1000_rows
    registered = scores.loc[scores["role"] == REGISTERED, "score"].to_numpy(dtype=float)
    return Evaluation(
        evidence=Evidence(
            metric=family.gate_metric,
            candidate_metric=roles[CANDIDATE][family.gate_metric],
            metric_floor=family.metric_floor,
            positives=int(truth.sum()),
            baselines=[versus(b.name, config.baseline_margin) for b in family.baselines],
            champion=versus(CHAMPION, config.champion_margin) if has_champion else None,
            champion_note=champion_note,
            flagged_rate=roles[CANDIDATE]["flagged_rate"],
            expected_flag_rate=artifact.expected_flag_rate,
            scores=np.concatenate([candidate_scores, registered]),
            artifact_sha256=candidate.artifact_sha256,
            artifact_verified=artifact.verified,
            scores_reproduced=artifact.reproduced,
        ),
        roles=roles,
        rows=len(rows),
        hours=int(len(np.unique(hours))) if len(rows) else 0,
        recall_by_kind=kind_recall(family, scores, kinds) if kinds is not None else None,
    )
