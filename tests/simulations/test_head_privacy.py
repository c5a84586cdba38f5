"""The categoriser head's federation under SecAgg+ and differential privacy (the LSTM's privacy machinery).

One real Flower simulation (the head's ServerApp and ClientApp, in a fresh process) runs three federations
in turn over 5 devices holding a few dozen random 384-d float16 embeddings over 5 labels: DP without SecAgg+,
SecAgg+, SecAgg+ with DP. Under SecAgg+ the head equals FedAvg of the device deltas computed in the clear
within SecAgg+'s quantisation bound and the label counts sum exactly; under DP the outcome records ε > 0 for
the train rounds and the counts round with the settings used. Every reply is searched for titles, token ids,
embedding rows and each device's label counts: under SecAgg+ none leaves in the clear; under central DP
alone the audit finds exactly each device's counts (the server is trusted there), never text.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from vane.client.head_app import fit_local, train_head_on_device
from vane.server.config import PrivacySettings, SecAggSettings, secure_privacy_settings
from vane.server.head_app import HeadSettings, class_weights
from vane.shared import head_protocol as h
from vane.shared import protocol as p
from vane.shared.errors import ConfigError, PrivacyConfigError
from vane.simulations.audit.messages import PrivacyLeakError
from vane.simulations.audit.text import TextAudit, TextNeedles, check_text_messages

DIMS, CLASSES, SIZES = 384, 5, (24, 30, 36, 27, 33)
SECURE = SecAggSettings(secure_aggregation=True)


@pytest.fixture
def flower_task(monkeypatch):
    from privacy_runs import as_flower_task

    as_flower_task(monkeypatch)


def _devices(seed: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for n in SIZES:
        x = rng.normal(size=(n, DIMS))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out.append((x.astype(np.float16).astype(np.float32), rng.integers(0, CLASSES, n)))
    return out


def _counts(devices) -> list[np.ndarray]:
    return [np.bincount(y, minlength=CLASSES).astype(np.float32) for _, y in devices]


def _needles(devices, counts: bool = True) -> TextNeedles:
    titles = [f"headline {i} of device {d}" for d, (_, y) in enumerate(devices) for i in range(len(y))]
    tokens = [[101, 2000 + i, 3000 + i, 4000 + i, 102] for i in range(len(titles))]
    return TextNeedles.of(titles, tokens, np.concatenate([x for x, _ in devices]), _counts(devices) if counts else ())


DP = PrivacySettings(dp_mode="client", noise_multiplier=1.0, clipping_norm=0.5, dp_delta=1e-3)
SECURE_DP = PrivacySettings(dp_mode="client", noise_multiplier=0.5, clipping_norm=0.5, dp_delta=1e-3)
#: The federations, in this order, in one Flower simulation (one start of the engine for all three).
RUNS = {
    "dp": HeadSettings(dims=DIMS, classes=CLASSES, rounds=2, local_epochs=1, learning_rate=1.0,
                       min_nodes=len(SIZES), privacy=DP),
    "secure": HeadSettings(dims=DIMS, classes=CLASSES, rounds=1, local_epochs=2, learning_rate=1.0,
                           min_nodes=len(SIZES), secagg=SECURE),
    "secure-dp": HeadSettings(dims=DIMS, classes=CLASSES, rounds=1, local_epochs=1, learning_rate=1.0,
                              min_nodes=len(SIZES), secagg=SECURE, privacy=SECURE_DP),
}
#: Replies each run's devices send: plain counts + train rounds; SecAgg+'s four stages per round.
REPLIES = {"dp": len(SIZES) * 3, "secure": len(SIZES) * 2 * 4, "secure-dp": len(SIZES) * 2 * 4}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three federations' outcomes and the audit lines of each run's replies."""
    pytest.importorskip("ray")
    from vane.simulations.head_fed import run_head_simulations

    tmp = tmp_path_factory.mktemp("head-privacy")
    devices = _devices()
    audit = tmp / "text-audit.jsonl"
    outcomes = run_head_simulations(devices, list(RUNS.values()), client_mods=[TextAudit(audit, _needles(devices))],
                                    workdir=tmp, isolated=True, num_cpus=2)
    lines = [json.loads(x) for x in audit.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == sum(REPLIES.values())
    out, start = {}, 0
    for (name, outcome), count in zip(zip(RUNS, outcomes, strict=True), REPLIES.values(), strict=True):
        out[name] = (outcome, lines[start : start + count])
        start += count
    return devices, out


def test_head_privacy_settings_refuse_what_the_lstm_refuses():
    server = PrivacySettings(dp_mode="server", noise_multiplier=1.0)
    with pytest.raises(PrivacyConfigError) as lstm:
        secure_privacy_settings({"dp-mode": "server", "noise-multiplier": 1.0}, 5)
    with pytest.raises(PrivacyConfigError) as head:
        HeadSettings(dims=DIMS, classes=CLASSES, min_nodes=5, secagg=SECURE, privacy=server)
    assert str(head.value) == str(lstm.value) and "dp-mode is 'server' with secure-aggregation" in str(lstm.value)
    adaptive = PrivacySettings(dp_mode="client", adaptive_clipping=True)
    with pytest.raises(PrivacyConfigError, match="adaptive-clipping is true with secure-aggregation"):
        HeadSettings(dims=DIMS, classes=CLASSES, secagg=SECURE, privacy=adaptive)
    with pytest.raises(PrivacyConfigError, match="head strategy is 'fedprox' with secure-aggregation or dp-mode"):
        HeadSettings(dims=DIMS, classes=CLASSES, strategy="fedprox", privacy=PrivacySettings(dp_mode="client"))
    with pytest.raises(PrivacyConfigError, match=re.escape("dp-delta is 0.5; expected 0 < delta < 1/population")):
        HeadSettings(dims=DIMS, classes=CLASSES, min_nodes=4, privacy=PrivacySettings(dp_mode="client", dp_delta=0.5))
    with pytest.raises(PrivacyConfigError, match="counts_clip_norm is 0"):
        HeadSettings(dims=DIMS, classes=CLASSES, counts_clip_norm=0)
    with pytest.raises(ConfigError, match="dp-mode is 'bogus'; expected one of"):
        HeadSettings.from_run_config({"dp-mode": "bogus"}, dims=DIMS, classes=CLASSES)
    with pytest.raises(ConfigError, match=re.escape("secagg-num-shares is 2.0")):
        HeadSettings.from_run_config({"secure-aggregation": True, "secagg-num-shares": 2}, dims=DIMS, classes=CLASSES)
    s = HeadSettings.from_run_config({"secure-aggregation": "true", "dp-mode": "client", "noise-multiplier": 0.8,
                                      "clipping-norm": 0.5}, dims=DIMS, classes=CLASSES, min_nodes=6)
    assert s.secagg.secure_aggregation and s.privacy.noise_multiplier == 0.8 and s.dp.population_size == 6
    from vane.simulations.federation import FederationError
    from vane.simulations.head_fed import run_head_simulation

    with pytest.raises(FederationError, match="secure-aggregation is on with 1 device; expected at least 2"):
        run_head_simulation(_devices()[:1], HeadSettings(dims=DIMS, classes=CLASSES, secagg=SECURE))


def test_text_audit_finds_a_device_label_counts_in_the_clear(tmp_path, flower_task):
    devices = _devices()
    x, y = devices[1]
    config = {h.DIMS_KEY: DIMS, h.CLASSES_KEY: CLASSES, h.EPOCHS_KEY: 1, h.LEARNING_RATE_KEY: 1.0, h.L2_KEY: 0.0,
              h.HEAD_ROUND_KEY: h.ROUND_COUNTS}
    msg = Message(content=RecordDict({p.CONFIG_RECORD: ConfigRecord(config)}), dst_node_id=7, message_type="train")
    context = Context(run_id=1, node_id=7, node_config={p.NODE_PARTITION_ID_KEY: 1}, state=RecordDict(),
                      run_config={})
    path = tmp_path / "audit.jsonl"
    TextAudit(path, _needles(devices))(msg, context, lambda m, c: train_head_on_device(m, c, lambda _: (x, y)))
    with pytest.raises(PrivacyLeakError, match="counts:1"):
        check_text_messages(path)


@pytest.mark.slow
def test_secagg_head_equals_fedavg_in_the_clear_and_hides_counts(runs):
    devices, by_run = runs
    out, audit = by_run["secure"]
    settings = RUNS["secure"]
    counts = np.sum(_counts(devices), axis=0)
    np.testing.assert_array_equal(out.counts, counts)  # whole counts are on SecAgg+'s grid: exact
    zero = np.zeros(settings.size, np.float32)
    deltas = np.stack([fit_local(zero, x, y, DIMS, CLASSES, epochs=2, learning_rate=1.0, l2=settings.l2,
                                 class_weights=class_weights(counts))[0] for x, y in devices])
    assert np.abs(deltas).max() < settings.secagg.secagg_clipping_range  # nothing clipped element-wise
    clear = np.average(deltas, axis=0, weights=list(SIZES))
    bound = settings.secagg.quantization_bound(list(SIZES), float(np.abs(deltas).max()))
    assert np.abs(out.weights - clear).max() <= bound
    assert np.abs(out.weights - clear).max() < 1e-2 * np.abs(clear).max()
    assert len(out.rounds) == 1 and len(out.rounds[0]["aggregated-nodes"]) == len(SIZES)
    assert out.privacy == {"secure-aggregation": True, "dp-mode": "off"}
    assert [line["findings"] for line in audit] == [[]] * len(audit)  # no title, embedding or label counts


@pytest.mark.slow
def test_dp_head_records_epsilon_and_settings(runs):
    devices, by_run = runs
    out, audit = by_run["dp"]
    dp = out.privacy
    assert dp["dp-mode"] == "client" and dp["noise-multiplier"] == 1.0 and dp["clipping-norm"] == 0.5
    assert dp["dp-rounds"] == 2 and dp["sampled-per-round"] == dp["population-size"] == len(SIZES)
    assert 0 < dp["dp-epsilon"] < math.inf and 0 < dp["counts-dp-epsilon"] < math.inf
    assert dp["dp-epsilon-total"] == pytest.approx(dp["dp-epsilon"] + dp["counts-dp-epsilon"])
    epsilons = [r["train"][p.EPSILON_KEY] for r in out.rounds]
    assert epsilons[0] < epsilons[1] == dp["dp-epsilon"]
    assert all(r["train"][p.DP_CLIPPING_NORM_KEY] == 0.5 for r in out.rounds)
    assert out.settings["privacy"]["dp_mode"] == "client" and out.settings["counts_clip_norm"] == 32.0
    assert np.isfinite(out.weights).all()
    # Central DP without SecAgg+ trusts the server: each device's counts (norm under counts_clip_norm, so
    # not scaled) reach it in the clear, and the audit sees exactly those; never a title or an embedding.
    assert all(np.linalg.norm(c) < 32.0 for c in _counts(devices))
    counts_round, train_rounds = audit[: len(SIZES)], audit[len(SIZES) :]
    assert sorted(line["partition"] for line in counts_round) == list(range(len(SIZES)))
    assert all(line["findings"] == [f"arrays/delta:counts:{line['partition']}"] for line in counts_round)
    assert [line["findings"] for line in train_rounds] == [[]] * len(train_rounds)


@pytest.mark.slow
def test_secagg_with_dp_head_noises_the_masked_mean_and_hides_counts(runs):
    _, by_run = runs
    out, audit = by_run["secure-dp"]
    dp = out.privacy
    assert dp["secure-aggregation"] and dp["dp-rounds"] == 1 and 0 < dp["dp-epsilon"] < math.inf
    assert out.rounds[0]["train"][p.DP_NOISE_STD_KEY] == pytest.approx(0.5 * 0.5 / len(SIZES))
    assert out.rounds[0]["train"][p.EPSILON_KEY] == dp["dp-epsilon"] and dp["counts-dp-epsilon"] > 0
    assert [line["findings"] for line in audit] == [[]] * len(audit)
