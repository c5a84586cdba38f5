"""Text-only tracking: synthetic browsing whose events are real HuffPost headlines, categories hidden.

A :class:`~vane.simulations.synthetic.SyntheticPopulation` over 29 categories (drifting mixtures, abrupt
shifts: the truth known at every event) names its categories after HuffPost's 29 labels; each event then
becomes a real **test** headline of its true label, drawn with a fixed seed (so no headline a labeller saw).
The tracker sees only what a method makes of the headline:

``oracle``           the true label (the tracker given the categories)
``encoder``          the label the federated head (10% labels) predicts from the headline's embedding
                     (the central head when the federation is off)
``encoder-1%``       the label ``centroid+prior-1%`` predicts (50 labels)
``hashed-tokens``    the label the hashed bag of words (10% labels) predicts: the light mode's best

Each is replayed through the tracker's own state by :func:`vane.simulations.drift.evaluate_drift`: the
Jensen–Shannon divergence (bits, :mod:`vane.shared.divergence`) of the tracked interests (the detector's
``current`` memory, what ``interests()`` ranks by) to the true mixture of the next event, and shift
detection precision, recall, F1 and delay (a report within 40 events after a true shift matches it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from vane.simulations.text_data import Headlines, Split

__all__ = ["tracking"]

VARIANTS = {"oracle": None, "encoder": "head-federated-10%", "encoder-1%": "centroid+prior-1%",
            "hashed-tokens": "bow-10%"}


def tracking(data: Headlines, split: Split, predictions: Mapping[str, np.ndarray], config: Any,
             say: Callable[[str], None]) -> dict[str, Any]:
    """Divergence and shift detection of each variant (see the module docstring)."""
    from vane.simulations.drift import evaluate_drift
    from vane.simulations.synthetic import SyntheticPopulation

    classes = len(data.categories)
    labels = data.labels[split.test]
    by_label = [np.flatnonzero(labels == c) for c in range(classes)]
    every = [np.flatnonzero(data.labels == c) for c in range(classes)]  # a label with no test headline
    out: dict[str, Any] = {}
    rng_seed = config.seed + 7
    for variant, method in VARIANTS.items():
        if method is not None and method not in predictions:
            method = "head-central-10%" if variant == "encoder" else None
            if method is None:
                continue
        population = SyntheticPopulation(config.tracking_users, num_categories=classes, seed=config.seed)
        index = {name: i for i, name in enumerate(population.categories)}
        rng = np.random.default_rng(rng_seed)  # the same headlines for every variant
        wrong = total = 0
        for uid, events in population.users.items():
            rewritten = []
            for ev in events:
                true = index[ev.categories[0]]
                if len(by_label[true]):
                    row = int(split.test[by_label[true][rng.integers(len(by_label[true]))]])
                    seen = int(predictions[method][np.searchsorted(split.test, row)]) if method else true
                else:
                    row = int(every[true][rng.integers(len(every[true]))])
                    seen = true
                wrong += seen != true
                total += 1
                rewritten.append(replace(ev, categories=(data.categories[seen],), title=data.titles[row]))
            population.users[uid] = rewritten
        population.categories = list(data.categories)
        result = evaluate_drift(population)
        out[variant] = {"method": method or "true labels", "label_error": wrong / max(1, total),
                        "divergence": result.divergence["current"], "divergence_all": result.divergence,
                        "detection": result.detection, "users": config.tracking_users, "events": total}
        det = result.detection
        say(f"  {variant:14s} JS {result.divergence['current']:.4f} bits  shift F1 {det['f1']:.3f} "
            f"(P {det['precision']:.3f}, R {det['recall']:.3f}, delay {det['mean_delay_events']:.1f} events)")
    if "oracle" in out:
        for entry in out.values():
            entry["divergence_ratio_to_oracle"] = entry["divergence"] / max(out["oracle"]["divergence"], 1e-12)
    return out
