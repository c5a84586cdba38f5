"""``vane sim evaluate-text``: the text encoder's categorisation and text-only tracking on HuffPost headlines.

One fixed-seed split (:func:`vane.simulations.text_data.split_headlines`): ``test`` headlines (5,000 by
default); the others dealt to ``devices`` simulated devices (100), each labelling ``label_fraction`` (10%)
of its own; ``few`` = 1% of labels (50) drawn from those. HuffPost's editors filed headlines under 29
sections of their own, not Topics paths, so every method here predicts those 29 labels (the device's head
has the same form over Topics; only its output size differs).

Categorisation methods (top-1, top-3, macro recall on the test headlines):

``majority``                the most common label of the labelled headlines
``prior``                   zero-shot: cosine to the embedded category descriptions (:mod:`.text_categories`)
``centroid-1%``             nearest centroid of the 1% labels (cosine)
``centroid+prior-1%``       centroids pulled to the prior: ``(Σ x + k·prior) / (n + k)`` with ``k`` = 3
``head-central-1%``         the softmax head trained centrally on the 1% labels
``bow-1%``, ``bow-10%``     hashed bag of words (the tracker's title tokens) + the same softmax regression
``head-central-10%``        the head trained centrally on the 10% labels (class-balanced, 300 steps)
``head-federated-10%``      the same head federated with Flower over the devices
                            (:func:`vane.simulations.head_fed.run_head_simulation`), each training on its
                            own labelled headlines; the text audit checks every reply
``head-central-100%``, ``bow-100%``  the central head and the hashed bag of words on every pool headline's
                            label (5,000: all the devices' headlines), for the tracking's label-count curve
``head-federated-100%``     with ``federated_all_labels``: the federated head on every device's labels

Tracking (:mod:`.text_tracking`) and the real browser fixtures (:mod:`.text_fixtures`) follow; the report
is :mod:`.text_report`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from vane.shared.errors import ConfigError
from vane.simulations.text_data import (
    CACHE_DIR,
    Headlines,
    Split,
    cached_embeddings,
    encoder_artifact,
    hashed_bow,
    load_headlines,
    split_headlines,
)

__all__ = ["TextEvalConfig", "run_text_eval", "scores"]

#: Pseudo-count of the prior in ``centroid+prior`` (chosen on the default split; see the report).
PRIOR_WEIGHT = 3.0


@dataclass(frozen=True)
class TextEvalConfig:
    """Everything the evaluation depends on (recorded in results.json)."""

    data: str = "../shared/datasets"
    seed: int = 0
    limit: int | None = None  # only the first N headlines (CI)
    test_size: int = 5000
    devices: int = 100
    label_fraction: float = 0.10
    few_labels: int = 50
    head_epochs: int = 300
    head_learning_rate: float = 10.0
    fed_rounds: int = 100
    fed_local_epochs: int = 2
    federated: bool = True
    federated_all_labels: bool = False  # also federate the head on every device's labels (~15 min more)
    tracking_users: int = 200
    encoder: str | None = None  # an encoder artifact; default: built once and cached under .vane/
    cache: str = str(CACHE_DIR)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 50:
            raise ConfigError(f"limit is {self.limit}; expected at least 50 headlines")
        if not 0 < self.label_fraction <= 1 or self.few_labels < 1 or self.devices < 1:
            raise ConfigError(f"label_fraction={self.label_fraction}, few_labels={self.few_labels}, devices="
                              f"{self.devices}; expected in (0, 1], >= 1, >= 1")
        if self.fed_rounds < 1 or self.fed_local_epochs < 1 or self.head_epochs < 1 or self.tracking_users < 1:
            raise ConfigError("fed_rounds, fed_local_epochs, head_epochs and tracking_users must be >= 1")


def scores(score: np.ndarray, truth: np.ndarray, classes: int) -> dict[str, float]:
    """top-1, top-3 and macro recall (mean over the labels present in ``truth`` of their top-1 recall)."""
    order = np.argsort(-score, axis=1, kind="stable")
    top1 = order[:, 0] == truth
    recall = [float(top1[truth == c].mean()) for c in range(classes) if (truth == c).any()]
    return {"top1": float(top1.mean()), "top3": float((order[:, :3] == truth[:, None]).any(axis=1).mean()),
            "macro_recall": float(np.mean(recall))}


def _head(x: np.ndarray, y: np.ndarray, classes: int, c: TextEvalConfig, init: np.ndarray | None = None) -> Any:
    from vane.client.topic_head import SoftmaxHead

    head = SoftmaxHead.zeros(x.shape[1], classes) if init is None else SoftmaxHead(init, x.shape[1], classes)
    head.fit(x, y, epochs=c.head_epochs, learning_rate=c.head_learning_rate)
    return head


def _centroids(x: np.ndarray, y: np.ndarray, classes: int, prior: np.ndarray | None, k: float) -> np.ndarray:
    sums = np.zeros((classes, x.shape[1]))
    np.add.at(sums, y, x)
    counts = np.bincount(y, minlength=classes)[:, None].astype(float)
    if prior is not None:
        sums, counts = sums + k * prior, counts + k
    mean = sums / np.maximum(counts, 1e-9)
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    out: np.ndarray = np.where(norms > 0, mean / np.maximum(norms, 1e-12), 0.0)
    return out


def categorisation(data: Headlines, x: np.ndarray, prior: np.ndarray, split: Split, c: TextEvalConfig,
                   say: Callable[[str], None], workdir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Every method's results on the test headlines, and each method's test scores (``n_test x C``: the
    heads' softmax probabilities, the centroids' cosines)."""
    classes = len(data.categories)
    y = data.labels
    test, few, lab = split.test, split.few, split.labelled
    yt = y[test]
    results: dict[str, Any] = {}
    predictions: dict[str, np.ndarray] = {}

    def keep(name: str, score: np.ndarray, **extra: Any) -> None:
        results[name] = {**scores(score, yt, classes), **extra}
        predictions[name] = np.asarray(score, dtype=np.float64)
        say(f"  {name:22s} top-1 {results[name]['top1']:.3f}  top-3 {results[name]['top3']:.3f}  "
            f"macro recall {results[name]['macro_recall']:.3f}")

    majority = np.zeros((len(test), classes))
    majority[:, np.bincount(y[lab], minlength=classes).argmax()] = 1.0
    keep("majority", majority, labels=len(lab))
    keep("prior", x[test] @ prior.T, labels=0)
    keep("centroid-1%", x[test] @ _centroids(x[few], y[few], classes, None, 0).T - 9 * (
        np.bincount(y[few], minlength=classes) == 0), labels=len(few))
    keep("centroid+prior-1%", x[test] @ _centroids(x[few], y[few], classes, prior, PRIOR_WEIGHT).T, labels=len(few))
    keep("head-central-1%", _head(x[few], y[few], classes, c).probabilities(x[test]), labels=len(few))
    bow = hashed_bow(data.titles)
    keep("bow-1%", _head(bow[few], y[few], classes, c).probabilities(bow[test]), labels=len(few))
    keep("bow-10%", _head(bow[lab], y[lab], classes, c).probabilities(bow[test]), labels=len(lab))
    started = time.perf_counter()
    central = _head(x[lab], y[lab], classes, c)
    keep("head-central-10%", central.probabilities(x[test]), labels=len(lab),
         seconds=time.perf_counter() - started)
    keep("head-central-100%", _head(x[split.pool], y[split.pool], classes, c).probabilities(x[test]),
         labels=len(split.pool))
    keep("bow-100%", _head(bow[split.pool], y[split.pool], classes, c).probabilities(bow[test]),
         labels=len(split.pool))
    if c.federated:
        fed, info = federated_head(data, x, split, c, say, workdir)
        from vane.client.topic_head import SoftmaxHead

        keep("head-federated-10%", SoftmaxHead(fed, x.shape[1], classes).probabilities(x[test]), labels=len(lab),
             **info)
        results["head-federated-10%"]["ratio_to_central"] = (results["head-federated-10%"]["top1"]
                                                             / results["head-central-10%"]["top1"])
    if c.federated and c.federated_all_labels:
        from vane.client.topic_head import SoftmaxHead

        fed, info = federated_head(data, x, split, c, say, workdir, split.pool)
        keep("head-federated-100%", SoftmaxHead(fed, x.shape[1], classes).probabilities(x[test]),
             labels=len(split.pool), **info)
    return results, predictions


def federated_head(data: Headlines, x: np.ndarray, split: Split, c: TextEvalConfig, say: Callable[[str], None],
                   workdir: Path, labelled_rows: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The head federated with Flower over the devices (their labelled headlines, default ``split.labelled``),
    audited for text leaks."""
    from vane.server.head_app import HeadSettings
    from vane.shared.wordpiece import WordPiece
    from vane.simulations.audit.text import TextAudit, TextNeedles, check_text_messages
    from vane.simulations.head_fed import run_head_simulation

    labelled = set((split.labelled if labelled_rows is None else labelled_rows).tolist())
    devices = [(x[rows], data.labels[rows]) for rows in
               ([r for r in part if int(r) in labelled] for part in split.devices) if len(rows)]
    settings = HeadSettings(dims=x.shape[1], classes=len(data.categories), rounds=c.fed_rounds,
                            local_epochs=c.fed_local_epochs, learning_rate=c.head_learning_rate,
                            min_nodes=len(devices))
    vocab = _encoder_vocab(c)
    tokenizer = WordPiece.from_bytes(vocab, 128)
    rows = split.pool  # every headline the devices hold
    needles = TextNeedles.of([data.titles[i] for i in rows], [tokenizer.encode(data.titles[i]) for i in rows], x[rows])
    audit = workdir / "text-audit.jsonl"
    audit.unlink(missing_ok=True)
    say(f"  federating the head: {len(devices)} devices, {c.fed_rounds} rounds x {c.fed_local_epochs} local steps")
    started = time.perf_counter()
    outcome = run_head_simulation(devices, settings, client_mods=[TextAudit(audit, needles)], workdir=workdir,
                                  isolated=True)
    seconds = time.perf_counter() - started
    summary = check_text_messages(audit)
    uploaded = [sum(int(v) for v in r["uploaded-bytes"].values()) / max(1, len(r["uploaded-bytes"]))
                for r in outcome.rounds]
    return outcome.weights, {"devices": len(devices), "rounds": c.fed_rounds, "local_epochs": c.fed_local_epochs,
                             "seconds": seconds, "uplink_bytes_per_device_round": float(np.mean(uploaded)),
                             "audit": summary}


def _encoder_vocab(c: TextEvalConfig) -> bytes:
    from vane.shared.encoder_artifact import EncoderArtifact

    assert c.encoder is not None
    return EncoderArtifact.load(c.encoder).vocab


def run_text_eval(config: TextEvalConfig, out: str | Path,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the evaluation; writes ``results.json``, ``report.md`` and ``text_eval.png`` into ``out``."""
    from dataclasses import replace

    from vane.client.encoder import TextEncoder
    from vane.simulations.text_categories import category_texts
    from vane.simulations.text_fixtures import fixture_other_shares
    from vane.simulations.text_report import write_report
    from vane.simulations.text_tracking import tracking

    say = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = load_headlines(config.data, config.limit)
    if config.test_size >= len(data):
        raise ConfigError(f"test_size is {config.test_size} for {len(data)} headlines; expected fewer")
    cache = Path(config.cache)
    encoder_path = Path(config.encoder) if config.encoder else encoder_artifact(cache, say)
    config = replace(config, encoder=str(encoder_path))
    say(f"embedding {len(data)} headlines (cached under {cache})")
    from vane.simulations.progress import Bar

    with Bar("embedding headlines", len(data)) as bar:
        x = cached_embeddings(data, encoder_path, cache, progress=lambda done, total: bar.update(done))
    encoder = TextEncoder.from_path(encoder_path)
    prior = encoder.embed(category_texts(data.categories))
    split = split_headlines(len(data), test_size=config.test_size, devices=config.devices,
                            label_fraction=config.label_fraction, few_labels=config.few_labels, seed=config.seed)
    say(f"categorisation: {len(split.test)} test headlines, {len(split.labelled)} labels (10%), {len(split.few)} (1%)")
    cat, predictions = categorisation(data, x, prior, split, config, say, out)
    say("text-only tracking")
    track = tracking(data, split, predictions, config, say, cat)
    say("real browser fixtures")
    fixtures = fixture_other_shares(config.data, encoder)
    results = {
        "config": {**asdict(config), "encoder_version": encoder.version, "headlines": len(data),
                   "categories": data.categories, "dataset_sha256": data.sha256, "prior_weight": PRIOR_WEIGHT},
        "categorisation": cat, "tracking": track, "fixtures": fixtures,
        "wall_seconds": time.perf_counter() - started,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")
    results["outputs"] = [str(p) for p in write_report(results, out)] + [str(out / "results.json")]
    return results
