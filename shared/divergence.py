"""Jensen–Shannon divergence, the one implementation every tracker, detector and evaluation uses."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence in bits along the last axis (0 = identical, 1 = disjoint).

    Parameters
    ----------
    p, q : ndarray of shape (..., C)
        Normalised distributions; rows may hold zeros.

    Returns
    -------
    ndarray of shape (...)
        One divergence per distribution pair, clipped to [0, 1] against rounding.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=-1)
        b = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=-1)
    out: np.ndarray = np.clip(0.5 * (a + b), 0.0, 1.0)
    return out


def js_divergence_of(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """:func:`js_divergence` of two distributions given as ``{name: share}`` (missing names are 0)."""
    keys = sorted(p.keys() | q.keys())
    a = np.array([p.get(k, 0.0) for k in keys])
    b = np.array([q.get(k, 0.0) for k in keys])
    return float(js_divergence(a, b)) if keys else 0.0
