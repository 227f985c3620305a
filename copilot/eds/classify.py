"""Inclusion classes from element fractions by ordered rules (ASTM E2142-style), with a confidence.

The first rule more likely than not to hold names the class. Its confidence is the probability, under Gaussian counting
errors of the fractions, that every threshold holds: Π Φ(margin / σ). No rule: ``unclassified``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from copilot.eds.settings import ClassRule

SIGMA_FLOOR = 0.01  # fractions are never known better than this (k-factor and background model)


def _rule_probability(rule: ClassRule, f: np.ndarray, s: np.ndarray, index: dict[str, int]) -> np.ndarray:
    """P(rule holds) per object; 0 for a ``min`` on an element that is not measured."""
    p = np.ones(len(f))
    for el, thr in rule.min.items():
        j = index.get(el)
        p = p * (0.0 if j is None else ndtr((f[:, j] - thr) / np.maximum(s[:, j], SIGMA_FLOOR)))
    for el, thr in rule.max.items():
        j = index.get(el)
        if j is not None:
            p = p * ndtr((thr - f[:, j]) / np.maximum(s[:, j], SIGMA_FLOOR))
    return p


def classify(fractions: np.ndarray, sigma: np.ndarray, elements: tuple[str, ...],
             rules: list[ClassRule]) -> tuple[list[str], np.ndarray]:
    """Class name and confidence per object (row of ``fractions``)."""
    index = {el: j for j, el in enumerate(elements)}
    n = len(fractions)
    names = ["unclassified"] * n
    conf = np.zeros(n)
    open_ = np.ones(n, bool)
    probs = []
    for rule in rules:
        p = _rule_probability(rule, fractions, sigma, index)
        probs.append(p)
        hit = open_ & (p > 0.5)
        for i in np.flatnonzero(hit):
            names[i] = rule.name
        conf[hit] = p[hit]
        open_ &= ~hit
    if open_.any():
        best = np.max(probs, axis=0) if probs else np.zeros(n)
        conf[open_] = 1 - best[open_]
    return names, conf
