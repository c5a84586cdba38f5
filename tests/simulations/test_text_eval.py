"""``vane sim evaluate-text`` end to end on a slice of HuffPost (the real encoder, Flower, the text audit)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
HUFFPOST = DATASETS / "huffpost-news-category-head10k"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not HUFFPOST.exists(), reason="the HuffPost headlines are not present")]


def test_evaluate_text_runs_end_to_end_on_a_slice(tmp_path: Path, encoder_blob: bytes):
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
                        "bow-10%", "head-central-10%", "head-federated-10%"}
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
    assert set(track) == {"oracle", "encoder", "encoder-1%", "hashed-tokens"}
    assert track["oracle"]["label_error"] == 0.0 and track["encoder"]["method"] == "head-federated-10%"
    assert all(0.0 <= t["divergence"] <= 1.0 and 0.0 <= t["detection"]["f1"] <= 1.0 for t in track.values())
    fixtures = results["fixtures"]
    if "skipped" not in fixtures:
        assert fixtures["visits"] == 137
        assert fixtures["other_rules_and_encoder"] <= fixtures["other_topics_rules"] < fixtures["other_older_rules"]
    report = (out / "report.md").read_text()
    assert "| head-federated-10% |" in report and "## Text-only tracking" in report
    assert (out / "text_eval.png").stat().st_size > 1000
    assert list((tmp_path / ".vane" / "text-eval").glob("embeddings-*.npy"))  # embedded once, cached
