"""The item-set leakage attack of an honest-but-curious server.

The server reads the rows of the ``emb/item`` part of an update that changed and guesses that the client
touched those hashed item buckets (likewise ``emb/category`` rows for the categories a client had):

- on a client's own delta (plain FedAvg, or central DP, whose noise comes after the server saw the
  clipped delta), every row that changed (:func:`attack`);
- on a delta with device noise ``z·C``, the rows whose norm exceeds what noise alone would give
  (:func:`noise_threshold`);
- on the aggregate of a SecAgg+ round, each client's set guessed as the ``k`` rows with the largest
  change, ``k`` being the true set size, an oracle that favours the attacker (:func:`attack_aggregate`);
- and, as the baseline, the ``k`` most popular rows of the population (:func:`popularity_baseline`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from vane.shared.events import Event
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import layout_slices, weight_layout


@dataclass
class ClientTruth:
    """What a client's training data touched: hashed item buckets and category rows."""

    items: set[int]
    categories: set[int]


def client_truths(users: Mapping[str, Sequence[Event]], order: Sequence[str], spec: ModelSpec,
                  taxonomy: Taxonomy, holdout_fraction: float = 0.1) -> list[ClientTruth]:
    """Per partition, the item buckets and category rows of the events it trains on."""
    from vane.client.training import holdout_size
    from vane.shared.features import Featurizer

    featurizer = Featurizer(spec, taxonomy)
    out = []
    for uid in order:
        events = list(users[uid])
        train = events[: len(events) - holdout_size(len(events), holdout_fraction)]
        feats = featurizer.encode(train)
        out.append(ClientTruth(set(np.unique(feats.item).tolist()) - {0},
                               set(np.unique(feats.cats).tolist()) - {0}))
    return out


def row_norms(delta: np.ndarray, spec: ModelSpec, name: str) -> np.ndarray:
    """L2 norm of each row of the named embedding inside a flat delta."""
    shape = dict(weight_layout(spec))[name]
    return np.linalg.norm(delta[layout_slices(spec)[name]].reshape(shape).astype(np.float64), axis=1)


def guess_changed(norms: np.ndarray, threshold: float) -> set[int]:
    """Rows whose change exceeds ``threshold`` (row 0, padding, left out)."""
    return set(np.flatnonzero(norms > threshold).tolist()) - {0}


def guess_top(scores: np.ndarray, k: int) -> set[int]:
    """The ``k`` rows of largest score (row 0, padding, left out; ties by index)."""
    order = [i for i in np.argsort(-scores, kind="stable").tolist() if i != 0]
    return set(order[:k])


def precision_recall(guess: set[int], truth: set[int]) -> tuple[float, float]:
    """Precision and recall of ``guess``; an empty guess has precision 0, an empty truth recall 1."""
    hit = len(guess & truth)
    return (hit / len(guess) if guess else 0.0), (hit / len(truth) if truth else 1.0)


def _mean_pr(pairs: list[tuple[float, float]]) -> dict[str, float]:
    return {"precision": float(np.mean([p for p, _ in pairs])), "recall": float(np.mean([r for _, r in pairs]))}


def noise_threshold(sigma: float, dim: int, z: float = 4.0) -> float:
    """Row norm that Gaussian noise of std ``sigma`` in ``dim`` coordinates exceeds with tiny probability."""
    return sigma * (math.sqrt(dim) + z / math.sqrt(2.0)) if sigma > 0 else 1e-12


def attack(deltas: list[np.ndarray], truths: list[ClientTruth], spec: ModelSpec, name: str,
           threshold: float) -> dict[str, float]:
    """Per-client attack: rows of ``name`` whose change exceeds ``threshold``."""
    field_ = "items" if name == "emb/item" else "categories"
    pairs = [precision_recall(guess_changed(row_norms(d, spec, name), threshold), getattr(t, field_))
             for d, t in zip(deltas, truths, strict=True)]
    return _mean_pr(pairs)


def attack_aggregate(aggregate: np.ndarray, truths: list[ClientTruth], spec: ModelSpec,
                     name: str) -> dict[str, float]:
    """Each client's set guessed as the top-k changed rows of the aggregate (k = its true size)."""
    field_ = "items" if name == "emb/item" else "categories"
    norms = row_norms(aggregate, spec, name)
    pairs = [precision_recall(guess_top(norms, len(getattr(t, field_))), getattr(t, field_)) for t in truths]
    return _mean_pr(pairs)


def popularity_baseline(truths: list[ClientTruth], name: str) -> dict[str, float]:
    """Guess each client's set as the k most popular rows among all clients (k = its true size)."""
    field_ = "items" if name == "emb/item" else "categories"
    counts = Counter(i for t in truths for i in getattr(t, field_))
    size = max(counts) + 1 if counts else 1
    scores = np.zeros(size)
    for i, c in counts.items():
        scores[i] = c
    pairs = [precision_recall(guess_top(scores, len(getattr(t, field_))), getattr(t, field_)) for t in truths]
    return _mean_pr(pairs)


def device_noise(deltas: list[np.ndarray], clipping_norm: float, z: float, seed: int = 0) -> list[np.ndarray]:
    """Each delta clipped to ``clipping_norm`` plus Gaussian noise of std ``z·clipping_norm``."""
    from vane.client.mods import clip_l2

    rng = np.random.default_rng(seed)
    return [clip_l2(d, clipping_norm)[0] + rng.normal(0.0, z * clipping_norm, d.shape).astype(np.float32)
            for d in deltas]

