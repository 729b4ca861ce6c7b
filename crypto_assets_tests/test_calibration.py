"""Calibration of the volatility model's probabilities: Brier, Brier skill, ECE, the warning."""

import numpy as np
import pytest

from crypto_assets.ml.metrics import calibration_metrics
from crypto_assets.ml.volatility_model import VolatilitySpikeModel


def test_calibration_metrics_on_known_cases():
    truth = np.array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0])
    base_rate = calibration_metrics(truth, np.full(10, 0.2))
    assert base_rate["brier"] == pytest.approx(0.16)
    assert base_rate["brier_skill"] == pytest.approx(0.0)
    assert base_rate["ece"] == pytest.approx(0.0)
    overconfident = calibration_metrics(truth, np.full(10, 0.65))  # one bin: |0.65 - 0.2|
    assert overconfident["ece"] == pytest.approx(0.45)
    assert overconfident["brier_skill"] < 0
    perfect = calibration_metrics(truth, truth.astype(float))
    assert perfect["brier"] == 0 and perfect["brier_skill"] == 1 and perfect["ece"] == 0
    # two bins, weighted by rows: 4 rows at 0.1 that are all 0 (gap 0.1), 6 rows at 0.9 with 3 ones (gap 0.4)
    two = calibration_metrics(np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0]), np.array([0.1] * 4 + [0.9] * 6))
    assert two["ece"] == pytest.approx((4 * 0.1 + 6 * 0.4) / 10)


def test_poor_calibration_is_warned_about():
    family = VolatilitySpikeModel()
    assert family.calibration_warning({"ece": 0.01, "brier_skill": 0.1}) is None
    warning = family.calibration_warning({"ece": 0.2, "brier_skill": -0.3})
    assert "expected calibration error 0.200" in warning and "Brier skill -0.300" in warning
