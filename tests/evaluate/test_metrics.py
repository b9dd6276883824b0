"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from extractguard.errors import ConfigurationError
from extractguard.evaluate import accuracy, fidelity, mean_kl, mean_l1
from extractguard.oracle import BudgetLadder


def test_fidelity_from_labels_and_probabilities() -> None:
    assert fidelity(np.array([0, 1, 2, 1]), np.array([0, 1, 1, 1])) == 0.75
    victim = np.array([[0.9, 0.1], [0.4, 0.6]])
    copy = np.array([[0.6, 0.4], [0.7, 0.3]])
    assert fidelity(victim, copy) == 0.5
    assert accuracy(np.array([1, 1]), copy) == 0.0


def test_fidelity_rejects_mismatched_lengths() -> None:
    with pytest.raises(ConfigurationError):
        fidelity(np.array([0, 1]), np.array([0]))


def test_mean_l1_by_hand() -> None:
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    q = np.array([[0.25, 0.75], [0.0, 1.0]])
    # Row 1: 0.25 + 0.25 = 0.5; row 2: 1 + 1 = 2; mean 1.25
    assert mean_l1(p, q) == pytest.approx(1.25)


def test_mean_kl_by_hand() -> None:
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    q = np.array([[0.25, 0.75], [0.5, 0.5]])
    row1 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    row2 = 1.0 * math.log(1.0 / 0.5)  # the 0 * log 0 term counts as 0
    assert mean_kl(p, q) == pytest.approx((row1 + row2) / 2)
    assert mean_kl(p, p) == pytest.approx(0.0)


def test_parse_budgets() -> None:
    assert list(BudgetLadder.parse("500, 50,100,50")) == [50, 100, 500]
    with pytest.raises(ConfigurationError, match="whole numbers"):
        BudgetLadder.parse("50,lots")
    with pytest.raises(ConfigurationError, match="positive"):
        BudgetLadder.parse("0,10")
