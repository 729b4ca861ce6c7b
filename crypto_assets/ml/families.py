"""The model families: the one list that assets, jobs, gates, serving and drift iterate.

Adding a model is one module under ``crypto_assets/ml/`` (a :class:`~crypto_assets.ml.family.ModelFamily`
with its config, features and baselines) and one line here.
"""

from __future__ import annotations

from crypto_assets.feature_spec import FEATURE_NAMES
from crypto_assets.ml.anomaly_detector import AnomalyDetector
from crypto_assets.ml.evidence import METRICS
from crypto_assets.ml.family import ModelFamily
from crypto_assets.ml.volatility_model import VolatilitySpikeModel

MODEL_FAMILIES: list[ModelFamily] = [AnomalyDetector(), VolatilitySpikeModel()]
FAMILIES_BY_NAME = {f.name: f for f in MODEL_FAMILIES}


def _check(families: list[ModelFamily]) -> None:
    """Fail at import, naming the family, when a declaration does not hold together."""
    if len({f.name for f in families}) < len(families) or len({f.score_asset for f in families}) < len(families):
        raise ValueError("model families need distinct names and score assets")
    for family in families:
        unknown = sorted(
            {*family.features, *(name for b in family.baselines for name in b.features)} - set(FEATURE_NAMES)
        )
        if unknown:
            raise ValueError(f"{family.name} reads features missing from the feature spec: {', '.join(unknown)}")
        if family.gate_metric not in METRICS:
            raise ValueError(f"{family.name}: gate metric {family.gate_metric!r} is not one of {', '.join(METRICS)}")
        bound = family.config_class.model_fields["train_days"].metadata
        if not any(getattr(c, "le", None) == family.max_train_days for c in bound):
            raise ValueError(
                f"{family.name}: {family.config_class.__name__}.train_days must be bounded by max_train_days"
            )


_check(MODEL_FAMILIES)
