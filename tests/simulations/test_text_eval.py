"""``vane sim evaluate-text`` end to end on a slice of HuffPost (the real encoder, Flower, the text audit)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from vane.simulations.drift import evaluate_drift, tune_detector
from vane.simulations.synthetic import SyntheticPopulation
from vane.simulations.text_data import Headlines, Split
from vane.simulations.text_tracking import PRIOR_GRID, VARIANTS, _Stream, prior_weights

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
HUFFPOST = DATASETS / "huffpost-news-category-head10k"
CLASSES = 6


def fake_data(per_label: int = 20) -> tuple[Headlines, Split]:
    """Headlines whose text is irrelevant: the tracking sees only the methods' test scores."""
    labels = np.repeat(np.arange(CLASSES), per_label)
    n = len(labels)
    data = Headlines([f"t{i}" for i in range(n)], [""] * n, labels, [f"cat{c}" for c in range(CLASSES)], "x")
    test = np.arange(0, n, 2)
    pool = np.arange(1, n, 2)
    return data, Split(test, pool, pool[:10], pool[:3], [pool])


def noisy_scores(data: Headlines, split: Split, ambiguous: float, seed: int) -> np.ndarray:
    """A calibrated posterior: labels come in pairs (0, 1), (2, 3), ...; a share ``ambiguous`` of each label's
    headlines scores 0.5 on both labels of its pair (argmax: always the first), the others 1 on their own."""
    rng = np.random.default_rng(seed)
    truth = data.labels[split.test]
    scores = np.eye(CLASSES)[truth]
    for row in np.flatnonzero(rng.random(len(truth)) < ambiguous):
        first = truth[row] - truth[row] % 2
        scores[row] = 0.0
        scores[row, [first, first + 1]] = 0.5
    return scores


def test_the_stream_turns_scores_into_one_hot_or_posterior_weights_and_perfect_scores_are_the_oracle() -> None:
    data, split = fake_data()
    stream = _Stream(data, split, users=6, seed=3)
    truth = np.eye(CLASSES)[data.labels[split.test]]
    oracle, perfect = stream.weights(None, "argmax"), stream.weights(truth * 5.0, "argmax")
    scores = noisy_scores(data, split, 0.5, seed=1)
    soft, hard = stream.weights(scores, "soft"), stream.weights(scores, "argmax")
    for uid, w in oracle.items():
        assert np.array_equal(w, perfect[uid]) and np.array_equal(w.argmax(axis=1), stream.true[uid])
        assert np.allclose(soft[uid].sum(axis=1), 1.0) and set(np.unique(hard[uid])) <= {0.0, 1.0}
        assert np.array_equal(soft[uid].argmax(axis=1), hard[uid].argmax(axis=1))  # argmax takes the first of a tie
    assert stream.label_error(oracle) == 0.0 < stream.label_error(hard) < 1.0
    a = evaluate_drift(stream.population, weights=oracle).divergence["current"]
    assert a == evaluate_drift(stream.population, weights=perfect).divergence["current"]
    with pytest.raises(Exception, match="expected"):
        evaluate_drift(stream.population, weights={uid: w[:, :2] for uid, w in oracle.items()})


def test_a_soft_stream_tracks_closer_than_its_argmax_and_the_prior_keeps_rows_normalised() -> None:
    data, split = fake_data()
    stream = _Stream(data, split, users=12, seed=4)
    scores = noisy_scores(data, split, 0.6, seed=2)
    soft, hard = stream.weights(scores, "soft"), stream.weights(scores, "argmax")
    divergence = {name: evaluate_drift(stream.population, weights=w).divergence["current"]
                  for name, w in (("soft", soft), ("argmax", hard))}
    assert divergence["soft"] < divergence["argmax"]  # argmax files every ambiguous headline under one label
    assert prior_weights(stream, soft, 0.0) == soft
    prior = prior_weights(stream, soft, 0.5)
    for uid, w in prior.items():
        assert np.allclose(w.sum(axis=1), 1.0) and (w >= 0).all()
        assert not np.allclose(w[5:], soft[uid][5:])  # the prior moves the weights once the memory holds mass
        assert np.allclose(w[0], soft[uid][0])  # an empty memory is a uniform prior
    assert set(PRIOR_GRID) >= {0.0} and {"oracle", "encoder", "encoder-soft", "encoder-soft+prior"} <= set(VARIANTS)


def test_tuning_takes_per_population_weights_and_refuses_a_mismatch() -> None:
    population = SyntheticPopulation(8, num_categories=CLASSES, seed=9)
    index = {c: i for i, c in enumerate(population.categories)}
    onehot = {uid: np.eye(CLASSES)[[index[ev.categories[0]] for ev in events]]
              for uid, events in population.users.items()}
    grid = {"short_half_life": (5.0, 8.0), "long_half_life": (30.0,), "enter": (0.12, 0.2), "exit": (0.05,)}
    assert tune_detector([population], grid=grid, weights=[onehot]) == tune_detector([population], grid=grid)
    with pytest.raises(Exception, match="weight sets"):
        tune_detector([population], grid=grid, weights=[onehot, onehot])


@pytest.mark.slow
@pytest.mark.skipif(not HUFFPOST.exists(), reason="the HuffPost headlines are not present")
def test_evaluate_text_runs_end_to_end_on_a_slice(tmp_path: Path, encoder_blob: bytes) -> None:
    pytest.importorskip("ray")
    encoder = tmp_path / "encoder.vane"
    encoder.write_bytes(encoder_blob)
    out = tmp_path / "out"
    vane = Path(sys.executable).parent / "vane"
    done = subprocess.run(
        [str(vane), "sim", "evaluate-text", "--out", str(out), "--data", str(DATASETS), "--limit", "400",
         "--test-size", "200", "--devices", "4", "--few-labels", "10", "--rounds", "2", "--users", "8",
         "--encoder", str(encoder)],
        cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    cat = results["categorisation"]
    assert set(cat) == {"majority", "prior", "centroid-1%", "centroid+prior-1%", "head-central-1%", "bow-1%",
                        "bow-10%", "head-central-10%", "head-federated-10%", "head-central-100%", "bow-100%"}
    for entry in cat.values():
        assert 0.0 <= entry["top1"] <= entry["top3"] <= 1.0 and 0.0 <= entry["macro_recall"] <= 1.0

    # the majority baseline, recomputed from the file: the same fixed split gives the same test rows
    from vane.simulations.text_data import load_headlines, split_headlines

    data = load_headlines(DATASETS, 400)
    split = split_headlines(400, test_size=200, devices=4, label_fraction=0.1, few_labels=10, seed=0)
    majority = np.bincount(data.labels[split.labelled], minlength=len(data.categories)).argmax()
    assert cat["majority"]["top1"] == pytest.approx(float(np.mean(data.labels[split.test] == majority)))
    assert cat["head-central-10%"]["labels"] == len(split.labelled) == 20
    assert cat["prior"]["top1"] > cat["majority"]["macro_recall"]  # the prior is not a constant

    fed = cat["head-federated-10%"]
    assert fed["devices"] == 4 and fed["rounds"] == 2
    assert fed["audit"]["passed"] and fed["audit"]["replies"] == 4 * 3  # a counts round, then 2 train rounds
    track = results["tracking"]
    assert set(track) == {name for name, (method, _) in VARIANTS.items() if method != "head-federated-100%"}
    assert track["oracle"]["label_error"] == 0.0 and track["encoder"]["method"] == "head-federated-10%"
    assert track["encoder-soft"]["method"] == "head-federated-10%" and track["encoder-soft"]["mode"] == "soft"
    assert track["encoder-soft+prior"]["prior_weight"] in PRIOR_GRID
    assert track["head-100%-soft"]["labels"] == cat["head-central-100%"]["labels"] == len(split.pool)
    for t in track.values():
        assert 0.0 <= t["divergence"] <= 1.0 and 0.0 <= t["detection"]["f1"] <= 1.0
        assert 0.0 <= t["detection_tuned"]["f1"] <= 1.0 and t["validation_seed"] != 0

    fixtures = results["fixtures"]
    if "skipped" not in fixtures:
        assert fixtures["visits"] == 137
        assert fixtures["other_rules_and_encoder"] <= fixtures["other_topics_rules"] < fixtures["other_older_rules"]
    report = (out / "report.md").read_text()
    assert "| head-federated-10% |" in report and "## Text-only tracking" in report
    assert (out / "text_eval.png").stat().st_size > 1000
    assert list((tmp_path / ".vane" / "text-eval").glob("embeddings-*.npy"))  # embedded once, cached
