"""The quality gates: each is a small function of an evaluation's evidence and its config.

Adding a gate is one function decorated with ``@gate(name, description)``: every evaluation asset
gets a blocking check of that name and description, its result and metadata come from the
function, ``ml.gate_evidence`` and the promotion event record it, and promotion requires every gate
in ``GATES`` to pass. A gate returns ``passed``, ``failed`` or ``inconclusive`` (too little
evidence: it fails, saying so; it never passes on no evidence).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from crypto_assets.ml.evidence import FAILED, INCONCLUSIVE, PASSED, Comparison

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import numpy as np


class GateConfig(dg.Config):
    """How the quality gates on an evaluation decide (statistics in crypto_assets/ml/evidence.py)."""

    min_pr_auc: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="The candidate's pooled out-of-time PR-AUC must reach this; empty means the model family's floor.",
    )
    baseline_margin: float = Field(
        default=0.0,
        ge=-1.0,
        le=1.0,
        description=(
            "beats_baseline: the interval's lower bound of PR-AUC(candidate) - PR-AUC(baseline) must exceed this, "
            "for every baseline."
        ),
    )
    champion_margin: float = Field(
        default=-0.02,
        ge=-1.0,
        le=1.0,
        description=(
            "beats_champion: the lower bound of PR-AUC(candidate) - PR-AUC(champion) must exceed this. Negative: not "
            "credibly worse (a fresher fit of an equal recipe passes); positive: a credible gain."
        ),
    )
    min_positives: int = Field(
        default=30,
        ge=1,
        description="Fewer positives in the evaluation window make every comparison inconclusive: the gate fails.",
    )
    confidence: float = Field(default=0.9, gt=0.5, lt=1.0, description="Coverage of the bootstrap interval.")
    bootstrap_replicates: int = Field(
        default=1000, ge=100, le=100_000, description="Resamples of the paired block bootstrap."
    )
    block_hours: int = Field(
        default=24, ge=1, le=24 * 14, description="Length of the resampled blocks of consecutive hours."
    )
    seed: int = Field(default=0, description="Seed of the bootstrap draws, fixed so a re-run decides the same.")
    max_flag_rate_ratio: float = Field(
        default=5.0, gt=1.0, description="Flag rate may be at most this many times the expected rate."
    )
    min_flag_rate_ratio: float = Field(
        default=0.1, gt=0.0, lt=1.0, description="Flag rate must be at least this fraction of the expected rate."
    )


@dataclass(frozen=True)
class Evidence:
    """What one evaluation found, for the gates to decide on: all of it on the same out-of-time rows."""

    metric: str  # the family's gate metric, e.g. pr_auc
    candidate_metric: float  # the candidate's pooled out-of-time value of it
    metric_floor: float  # the family's default floor
    positives: int
    baselines: list[Comparison]
    champion: Comparison | None  # None when there is no champion to compare with (champion_note says why)
    champion_note: str
    flagged_rate: float
    expected_flag_rate: float
    scores: np.ndarray  # every out-of-time and registered score of the candidate
    artifact_sha256: str
    artifact_verified: bool
    scores_reproduced: bool

    @property
    def comparisons(self) -> list[Comparison]:
        return [*self.baselines, *([self.champion] if self.champion else [])]


@dataclass(frozen=True)
class GateResult:
    outcome: str  # passed, failed or inconclusive
    why: str  # one line for the check's description and the promotion event
    metadata: dict = field(default_factory=dict)  # the evidence: numbers that vary from one evaluation to the next
    rule: str = ""  # what passing means, with its thresholds (constants stay out of the numbers, so none is plotted)

    @property
    def passed(self) -> bool:
        return self.outcome == PASSED


@dataclass(frozen=True)
class Gate:
    name: str
    description: str
    decide: Callable[[Evidence, GateConfig], GateResult]


GATES: list[Gate] = []
# The two gates that decide on comparisons (ml.gate_evidence records which comparison each decided on).
BASELINE_GATE, CHAMPION_GATE = "beats_baseline", "beats_champion"


def gate(name: str, description: str):
    """Register the decorated function as a gate (its order is the order the UI lists the checks)."""

    def register(decide: Callable[[Evidence, GateConfig], GateResult]):
        GATES.append(Gate(name, description, decide))
        return decide

    return register


def decide(evidence: Evidence, config: GateConfig) -> dict[str, GateResult]:
    """Every gate's result, by gate name."""
    return {g.name: g.decide(evidence, config) for g in GATES}


def combined(outcomes: list[str]) -> str:
    """All comparisons must pass; any inconclusive one makes the whole inconclusive, unless another failed outright."""
    if any(o == FAILED for o in outcomes):
        return FAILED
    if any(o == INCONCLUSIVE for o in outcomes) or not outcomes:
        return INCONCLUSIVE
    return PASSED


def comparison_metadata(comparisons: list[Comparison]) -> dict:
    out = {}
    for c in comparisons:
        out.update(
            {
                f"{c.comparator}_{c.metric}": c.other,
                f"candidate_{c.metric}": c.candidate,
                f"{c.comparator}_difference": c.difference,
                f"{c.comparator}_ci_low": c.ci_low,
                f"{c.comparator}_ci_high": c.ci_high,
                f"{c.comparator}_outcome": c.outcome,
                "positives": c.positives,
            }
        )
    return out


def comparison_rule(comparisons: list[Comparison], config: GateConfig) -> str:
    margins = ", ".join(f"{c.comparator} {c.margin:+g}" for c in comparisons)
    return (
        f"{config.confidence:.0%} paired block-bootstrap interval ({config.block_hours} h blocks, "
        f"{config.bootstrap_replicates} resamples) of candidate minus comparator; passed when its lower bound is above "
        f"the margin ({margins}); inconclusive below {config.min_positives} positives"
    )


@gate("meets_metric_floor", "The candidate's pooled out-of-time PR-AUC reaches the floor, on enough positives.")
def meets_metric_floor(e: Evidence, config: GateConfig) -> GateResult:
    floor = config.min_pr_auc if config.min_pr_auc is not None else e.metric_floor
    if e.positives < config.min_positives:
        outcome = INCONCLUSIVE
    else:
        outcome = PASSED if e.candidate_metric >= floor else FAILED
    return GateResult(
        outcome,
        f"{e.metric} {e.candidate_metric:.4f} vs floor {floor} on {e.positives} positives",
        {f"candidate_{e.metric}": e.candidate_metric, "positives": e.positives},
        f"{e.metric} >= {floor} on at least {config.min_positives} positives",
    )


@gate(
    BASELINE_GATE,
    "For every baseline, the lower bound of the block-bootstrap interval (GateConfig.confidence, 90% by default) "
    "of the PR-AUC difference exceeds the margin.",
)
def beats_baseline(e: Evidence, config: GateConfig) -> GateResult:
    return GateResult(
        combined([c.outcome for c in e.baselines]),
        "; ".join(c.sentence() for c in e.baselines),
        comparison_metadata(e.baselines),
        comparison_rule(e.baselines, config),
    )


@gate(
    CHAMPION_GATE,
    "Against the champion's recipe on the same rows, the interval's lower bound exceeds the champion margin; "
    "passes when there is no champion that can serve.",
)
def beats_champion(e: Evidence, config: GateConfig) -> GateResult:
    if e.champion is None:
        return GateResult(PASSED, e.champion_note, {"champion": e.champion_note}, "passes when no champion can serve")
    return GateResult(
        e.champion.outcome,
        f"{e.champion_note}: {e.champion.sentence()}",
        {"champion": e.champion_note, **comparison_metadata([e.champion])},
        comparison_rule([e.champion], config),
    )


@gate("sane_flag_rate", "The candidate flags a plausible share of rows.")
def sane_flag_rate(e: Evidence, config: GateConfig) -> GateResult:
    low, high = config.min_flag_rate_ratio * e.expected_flag_rate, config.max_flag_rate_ratio * e.expected_flag_rate
    inside = low <= e.flagged_rate <= high
    return GateResult(
        PASSED if inside else FAILED,
        f"flags {e.flagged_rate:.4f} of rows: {'inside' if inside else 'outside'} the band {low:.4f} .. {high:.4f}",
        {"flagged_rate": e.flagged_rate},
        f"flag rate between {config.min_flag_rate_ratio:g}x and {config.max_flag_rate_ratio:g}x the expected "
        f"{e.expected_flag_rate:.4g} ({low:.4g} .. {high:.4g})",
    )


@gate("no_nan_scores", "Every out-of-time and registered score is finite.")
def no_nan_scores(e: Evidence, config: GateConfig) -> GateResult:
    import numpy as np

    non_finite = int((~np.isfinite(e.scores)).sum())
    return GateResult(
        PASSED if len(e.scores) and not non_finite else FAILED,
        f"{non_finite} non-finite of {len(e.scores)} scores",
        {"scored_rows": len(e.scores), "non_finite": non_finite},
        "every out-of-time and registered score is a finite number",
    )


@gate("artifact_verified", "The stored artifact matches its sha256 and reproduces its scores.")
def artifact_verified(e: Evidence, config: GateConfig) -> GateResult:
    ok = e.artifact_verified and e.scores_reproduced
    return GateResult(
        PASSED if ok else FAILED,
        "sha256 verified and scores reproduced" if ok else "the artifact failed verification or reproduction",
        {"sha256": e.artifact_sha256, "verified": e.artifact_verified, "scores_reproduced": e.scores_reproduced},
        "the stored bytes match their sha256, and the reloaded model gives the scores stored at registration",
    )


GATE_NAMES = [g.name for g in GATES]
