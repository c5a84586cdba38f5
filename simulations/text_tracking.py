"""Text-only tracking: synthetic browsing whose events are real HuffPost headlines, categories hidden.

A :class:`~vane.simulations.synthetic.SyntheticPopulation` over 29 categories (drifting mixtures, abrupt
shifts: the truth known at every event) names its categories after HuffPost's 29 labels; each event then
becomes a real **test** headline of its true label, drawn with a fixed seed (so no headline a labeller saw).
The tracker sees only what a method makes of the headline, as per-event category weights
(:func:`vane.simulations.drift.evaluate_drift`'s ``weights``):

``argmax``       the method's top label (what the device's categoriser records today)
``soft``         the method's posterior vector (a softmax head's probabilities)
``soft+prior``   the posterior times a personal prior, ``p(c|x) · ((1-a)/C + a · current_c)``
                 renormalised, where ``current`` is the detector's current memory before the event;
                 ``a`` is chosen on a validation population (its own seed), never on the reported one

Variants (:data:`VARIANTS`): ``oracle`` (the true label), ``encoder`` (argmax of the federated head on
10% labels; the central head when the federation is off), ``encoder-soft``, ``encoder-soft+prior``,
``encoder-1%`` (argmax of ``centroid+prior-1%``), a label-count curve of central class-balanced heads on
1%, 10% and 100% of the pool's labels (``head-N%-…``), and hashed bag of words on 10% and 100% labels
(``hashed-…``, the light mode's best).

Each variant reports the Jensen–Shannon divergence (bits) of the tracked interests (the detector's
``current`` memory, what ``interests()`` ranks by) to the true mixture of the next event, and shift
detection (a report within 40 events after a true shift matches it) with the tracker's default detector
and with settings tuned by :func:`vane.simulations.drift.tune_detector` on the validation population
(with the variant's own weights; a ``soft+prior`` stream's weights are those under the default detector).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from vane.simulations.text_data import Headlines, Split

__all__ = ["PRIOR_GRID", "VARIANTS", "prior_weights", "tracking"]

FEDERATED = "head-federated-10%"
#: name → (categorisation method whose test scores it uses, mode); ``None``: the true label.
VARIANTS: dict[str, tuple[str | None, str]] = {
    "oracle": (None, "argmax"),
    "encoder": (FEDERATED, "argmax"),
    "encoder-soft": (FEDERATED, "soft"),
    "encoder-soft+prior": (FEDERATED, "soft+prior"),
    "encoder-1%": ("centroid+prior-1%", "argmax"),
    "head-1%-soft": ("head-central-1%", "soft"),
    "head-1%-soft+prior": ("head-central-1%", "soft+prior"),
    "head-10%": ("head-central-10%", "argmax"),
    "head-10%-soft": ("head-central-10%", "soft"),
    "head-10%-soft+prior": ("head-central-10%", "soft+prior"),
    "head-100%": ("head-central-100%", "argmax"),
    "head-100%-soft": ("head-central-100%", "soft"),
    "head-100%-soft+prior": ("head-central-100%", "soft+prior"),
    "encoder-100%": ("head-federated-100%", "argmax"),  # only with ``federated_all_labels``
    "encoder-100%-soft": ("head-federated-100%", "soft"),
    "encoder-100%-soft+prior": ("head-federated-100%", "soft+prior"),
    "hashed-tokens": ("bow-10%", "argmax"),
    "hashed-tokens-soft": ("bow-10%", "soft"),
    "hashed-100%": ("bow-100%", "argmax"),
    "hashed-100%-soft": ("bow-100%", "soft"),
}
#: The personal prior's weights ``a`` tried on the validation population.
PRIOR_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)
#: The validation population's seed is the reported seed plus this.
VALIDATION_OFFSET = 1000


class _Stream:
    """A population whose events are test headlines: per user, the test position of each event's headline
    (-1 when its label has no test headline: that event is then seen as its true label)."""

    def __init__(self, data: Headlines, split: Split, users: int, seed: int) -> None:
        from vane.simulations.synthetic import SyntheticPopulation

        classes = len(data.categories)
        self.population = SyntheticPopulation(users, num_categories=classes, seed=seed)
        index = {name: i for i, name in enumerate(self.population.categories)}
        labels = data.labels[split.test]
        by_label = [np.flatnonzero(labels == c) for c in range(classes)]
        rng = np.random.default_rng(seed + 7)  # the same headlines for every variant
        self.true: dict[str, np.ndarray] = {}
        self.rows: dict[str, np.ndarray] = {}
        for uid, events in self.population.users.items():
            true = np.array([index[ev.categories[0]] for ev in events])
            self.true[uid] = true
            self.rows[uid] = np.array([int(by_label[c][rng.integers(len(by_label[c]))]) if len(by_label[c]) else -1
                                       for c in true])
        self.population.categories = list(data.categories)
        self.classes = classes

    def weights(self, scores: np.ndarray | None, mode: str) -> dict[str, np.ndarray]:
        """Per user, the ``n x C`` weights of ``mode`` (``argmax`` or ``soft``) from the test ``scores``."""
        eye = np.eye(self.classes)
        out = {}
        for uid, rows in self.rows.items():
            true = eye[self.true[uid]]
            if scores is None:
                out[uid] = true
                continue
            seen = scores[rows]
            seen = eye[seen.argmax(axis=1)] if mode == "argmax" else seen / seen.sum(axis=1, keepdims=True)
            out[uid] = np.where((rows < 0)[:, None], true, seen)
        return out

    def label_error(self, weights: Mapping[str, np.ndarray]) -> float:
        wrong = sum(int((w.argmax(axis=1) != self.true[uid]).sum()) for uid, w in weights.items())
        return wrong / max(1, sum(len(t) for t in self.true.values()))


def prior_weights(stream: _Stream, posterior: Mapping[str, np.ndarray], a: float,
                  detector_config: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """``soft+prior`` weights: each event's posterior times the personal prior from the detector's
    ``current`` memory before the event (the detector fed these same weights), renormalised."""
    from vane.client.shifts import ShiftDetector
    from vane.simulations.drift import _vector

    if a == 0:
        return dict(posterior)
    names = tuple(stream.population.categories)
    index = {name: i for i, name in enumerate(names)}
    classes = len(names)
    out = {}
    for uid, p in posterior.items():
        detector = ShiftDetector(**dict(detector_config or {}))
        events = stream.population.users[uid]
        rows = np.empty_like(p)
        for t, ev in enumerate(events):
            current = _vector(detector.current, index)  # normalised; zeros before the first event
            prior = (1.0 - a) / classes + (a * current if current.sum() > 0 else a / classes)
            w = p[t] * prior
            rows[t] = w / w.sum()
            detector.update(names, t + 1, ev.unix_time, weights=rows[t])
        out[uid] = rows
    return out


def _choose_prior(validation: _Stream, posterior: Mapping[str, np.ndarray]) -> tuple[float, dict[float, float]]:
    """The prior weight with the lowest tracked divergence on the validation population."""
    from vane.simulations.drift import evaluate_drift

    tried = {a: evaluate_drift(validation.population, weights=prior_weights(validation, posterior, a)
                               ).divergence["current"] for a in PRIOR_GRID}
    return min(tried, key=lambda a: (tried[a], a)), tried


def _method(name: str | None, scores: Mapping[str, np.ndarray]) -> str | None:
    if name == FEDERATED and name not in scores:
        return "head-central-10%"  # the federation is off
    return name


def tracking(data: Headlines, split: Split, scores: Mapping[str, np.ndarray], config: Any,
             say: Callable[[str], None], categorisation: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Divergence and shift detection of each variant (see the module docstring).

    ``scores``: per categorisation method, its scores over the test headlines (``n_test x C``; softmax
    probabilities for the heads); ``categorisation``: the methods' results, copied beside each variant.
    """
    from vane.simulations.drift import _detections, detection_scores, evaluate_drift, tune_detector

    reported = _Stream(data, split, config.tracking_users, config.seed)
    validation = _Stream(data, split, config.tracking_users, config.seed + VALIDATION_OFFSET)
    priors: dict[str, tuple[float, dict[float, float]]] = {}
    out: dict[str, Any] = {}
    for variant, (wanted, mode) in VARIANTS.items():
        method = _method(wanted, scores)
        if method is not None and method not in scores:
            continue
        table = None if method is None else scores[method]
        base = "argmax" if mode == "argmax" else "soft"
        w_rep, w_val = reported.weights(table, base), validation.weights(table, base)
        entry: dict[str, Any] = {"method": method or "true labels", "mode": mode if method else "true"}
        if mode == "soft+prior":
            assert method is not None
            if method not in priors:
                priors[method] = _choose_prior(validation, w_val)
            a, tried = priors[method]
            w_rep, w_val = prior_weights(reported, w_rep, a), prior_weights(validation, w_val, a)
            entry.update(prior_weight=a, prior_validation_divergence={str(k): v for k, v in tried.items()})
        result = evaluate_drift(reported.population, weights=w_rep)
        tuned, validation_f1 = tune_detector([validation.population], weights=[w_val])
        tuned_det = detection_scores(_detections(reported.population, tuned, w_rep))
        entry.update(label_error=reported.label_error(w_rep), divergence=result.divergence["current"],
                     divergence_all=result.divergence, detection=result.detection, detection_tuned=tuned_det,
                     tuned_detector=tuned, tuned_validation_f1=validation_f1, users=config.tracking_users,
                     events=sum(len(t) for t in reported.true.values()),
                     validation_seed=config.seed + VALIDATION_OFFSET)
        if categorisation is not None and method is not None and method in categorisation:
            entry.update(head_top1=categorisation[method]["top1"],
                         head_macro_recall=categorisation[method]["macro_recall"],
                         labels=categorisation[method]["labels"])
        out[variant] = entry
        det = result.detection
        say(f"  {variant:21s} JS {entry['divergence']:.4f} bits  shift F1 {det['f1']:.3f} "
            f"(P {det['precision']:.3f}, R {det['recall']:.3f}); tuned F1 {tuned_det['f1']:.3f}"
            + (f"; prior a={entry['prior_weight']}" if "prior_weight" in entry else ""))
    if "oracle" in out:
        for entry in out.values():
            entry["divergence_ratio_to_oracle"] = entry["divergence"] / max(out["oracle"]["divergence"], 1e-12)
    return out
