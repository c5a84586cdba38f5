"""Bad updates to the server: a huge finite delta is rejected, a huge num-examples claim is capped.

Before issue 13 plain FedAvg aggregated one finite 1e30 delta (the global weights reached 2.5e29)
and a device claiming ``num-examples=1e30`` made its delta the whole step. The rounds here go
through the real strategies' ``aggregate_train`` with real Flower reply messages.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from privacy_runs import as_flower_task
from vane.server.config import ServerSettings
from vane.server.strategies import DeltaAggregation, make_strategy
from vane.server.update_bounds import UpdateBounds, lower_median
from vane.shared import protocol as p
from vane.shared.errors import ConfigError

SIZE = 64
HONEST = {11: 40.0, 12: 55.0, 13: 47.0, 14: 62.0, 15: 51.0}


@pytest.fixture(autouse=True)
def _flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    as_flower_task(monkeypatch)


def honest_deltas() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(13)
    return {node: rng.normal(0.0, 0.01, SIZE).astype(np.float32) for node in HONEST}


def reply(node: int, delta: np.ndarray, num_examples: float) -> Message:
    content = RecordDict({p.ARRAYS_RECORD: ArrayRecord({p.DELTA_KEY: Array(delta)}),
                          p.METRICS_RECORD: MetricRecord({p.NUM_EXAMPLES_KEY: num_examples, p.TRAIN_LOSS_KEY: 1.0})})
    msg = Message(content, dst_node_id=0, message_type="train")
    msg.metadata.__dict__["_src_node_id"] = node  # as the SuperLink stamps a reply with its sender
    return msg


class Nodes:
    """The one thing a strategy asks of the grid when it configures a round: the connected nodes."""

    def get_node_ids(self) -> list[int]:
        return [*HONEST, 99]


def strategy(name: str = "fedavg", bounds: UpdateBounds | None = None) -> DeltaAggregation:
    """A strategy that has configured round 1 with global weights of ones."""
    s = make_strategy(name, model_blob=b"", model_version="v1", bounds=bounds)
    s.configure_train(1, ArrayRecord({p.WEIGHTS_KEY: Array(np.ones(SIZE, dtype=np.float32))}), ConfigRecord({}),
                      Nodes())  # type: ignore[arg-type]
    return s


def run_round(s: DeltaAggregation, replies: list[Message]) -> tuple[np.ndarray, dict[str, float]]:
    arrays, metrics = s.aggregate_train(1, replies)
    assert arrays is not None and metrics is not None
    return arrays[p.WEIGHTS_KEY].numpy(), {k: float(v) for k, v in metrics.items()}  # type: ignore[arg-type]


def fedavg(deltas: dict[int, np.ndarray], weights: dict[int, float]) -> np.ndarray:
    """The reference: 1 + the num-examples-weighted mean of ``deltas``, in float64."""
    nodes = sorted(deltas)
    stacked = np.stack([deltas[n].astype(np.float64) for n in nodes])
    return 1.0 + np.average(stacked, axis=0, weights=[weights[n] for n in nodes])


def test_a_finite_1e30_delta_is_rejected_and_the_round_is_fedavg_of_the_honest_devices() -> None:
    deltas = honest_deltas()
    s = strategy()
    new, metrics = run_round(s, [reply(n, d, HONEST[n]) for n, d in deltas.items()]
                             + [reply(99, np.full(SIZE, 1e30, dtype=np.float32), 50.0)])
    log = s.rounds[1]
    assert set(log.rejected) == {99} and "exceeds update-norm-ratio 10" in log.rejected[99]
    assert sorted(log.aggregated_nodes) == sorted(HONEST)
    assert metrics[p.REJECTED_UPDATES_KEY] == 1 and metrics[p.CAPPED_NUM_EXAMPLES_KEY] == 0
    np.testing.assert_allclose(new, fedavg(deltas, HONEST), rtol=0, atol=1e-6)
    assert np.max(np.abs(new)) < 2


@pytest.mark.parametrize("name", ["fedavg", "fedprox", "fedtrimmedavg", "fedadam", "krum"])
def test_every_delta_strategy_rejects_the_1e30_delta(name: str) -> None:
    s = strategy(name)
    deltas = honest_deltas()
    new, _ = run_round(s, [reply(n, d, HONEST[n]) for n, d in deltas.items()]
                       + [reply(99, np.full(SIZE, 1e30, dtype=np.float32), 50.0)])
    assert set(s.rounds[1].rejected) == {99}
    assert np.all(np.isfinite(new)) and np.max(np.abs(new)) < 2


def test_without_the_bound_the_1e30_delta_takes_over_the_round() -> None:
    """The failure the bound prevents (update-norm-ratio 0 turns it off): what FedAvg did before."""
    deltas = honest_deltas()
    s = strategy(bounds=UpdateBounds(norm_ratio=0.0))
    new, _ = run_round(s, [reply(n, d, HONEST[n]) for n, d in deltas.items()]
                       + [reply(99, np.full(SIZE, 1e30, dtype=np.float32), 50.0)])
    assert not s.rounds[1].rejected and np.max(np.abs(new)) > 1e28


def test_a_claim_of_1e30_examples_is_capped_at_ten_times_the_median_claim() -> None:
    deltas = honest_deltas()
    liar = np.full(SIZE, 0.02, dtype=np.float32)  # a plausible delta: within the norm bound
    s = strategy()
    new, metrics = run_round(s, [reply(n, d, HONEST[n]) for n, d in deltas.items()] + [reply(99, liar, 1e30)])
    log = s.rounds[1]
    median = lower_median(list(HONEST.values()) + [1e30])
    assert median == 51.0
    assert set(log.capped) == {99} and "num-examples 1e+30 capped at 510" in log.capped[99]
    assert not log.rejected and metrics[p.CAPPED_NUM_EXAMPLES_KEY] == 1
    weights = {**HONEST, 99: 10 * median}
    np.testing.assert_allclose(new, fedavg({**deltas, 99: liar}, weights), rtol=0, atol=1e-6)
    # Uncapped, the liar's delta was the whole step; capped, its share is 10 x median / (10 x median + 255).
    share = weights[99] / sum(weights.values())
    assert share == pytest.approx(510 / 765)
    uncapped = fedavg({**deltas, 99: liar}, {**HONEST, 99: 1e30})
    np.testing.assert_allclose(uncapped, 1.0 + liar.astype(np.float64), rtol=0, atol=1e-12)
    assert np.max(np.abs(new - uncapped)) > 0.005


def test_max_num_examples_caps_every_claim() -> None:
    s = strategy(bounds=UpdateBounds(examples_ratio=0.0, max_num_examples=45.0))
    deltas = honest_deltas()
    run_round(s, [reply(n, d, HONEST[n]) for n, d in deltas.items()])
    assert sorted(s.rounds[1].capped) == [n for n, c in sorted(HONEST.items()) if c > 45.0]
    assert all("max-num-examples 45" in reason for reason in s.rounds[1].capped.values())


def test_an_honest_round_is_bit_identical_to_fedavg_without_bounds() -> None:
    deltas = honest_deltas()
    bounded, _ = run_round(strategy(), [reply(n, d, HONEST[n]) for n, d in deltas.items()])
    plain, _ = run_round(strategy(bounds=UpdateBounds(0.0, 0.0, float("inf"))),
                         [reply(n, d, HONEST[n]) for n, d in deltas.items()])
    assert bounded.tobytes() == plain.tobytes()
    np.testing.assert_allclose(bounded, fedavg(deltas, HONEST), rtol=0, atol=1e-6)


def test_two_devices_the_smaller_norm_sets_the_bound() -> None:
    """The lower median: one attacker among two devices cannot raise the bound with its own norm."""
    s = strategy()
    honest = honest_deltas()[11]
    run_round(s, [reply(11, honest, 40.0), reply(99, np.full(SIZE, 1e30, dtype=np.float32), 40.0)])
    assert set(s.rounds[1].rejected) == {99} and s.rounds[1].aggregated_nodes == [11]


@pytest.mark.parametrize(("config", "words"), [
    ({"update-norm-ratio": 0.5}, "update-norm-ratio is 0.5; expected 0 \\(off\\) or >= 1"),
    ({"num-examples-ratio": -1.0}, "num-examples-ratio is -1.0; expected 0 \\(off\\) or >= 1"),
    ({"max-num-examples": 0}, "max-num-examples is 0; expected >= 1"),
    ({"update-norm-ratio": "big"}, "update-norm-ratio is 'big'; expected a finite number"),
])
def test_bad_bound_settings_are_refused(config: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        ServerSettings.from_run_config(config)


@pytest.mark.slow
def test_the_run_passes_its_bounds_and_dp_turns_the_norm_ratio_off(tmp_path) -> None:
    """A median-relative rejection would change DP's sensitivity; clipping bounds every delta there instead."""
    pytest.importorskip("tensorflow")
    from vane.server.privacy import apply_privacy
    from vane.server.run import FederationRun

    settings = ServerSettings(out_dir=str(tmp_path), update_norm_ratio=4.0, num_examples_ratio=3.0,
                              max_num_examples=500)
    plain = FederationRun(settings)
    assert plain.strategy.bounds == UpdateBounds(4.0, 3.0, 500.0)  # type: ignore[attr-defined]
    private = FederationRun(settings)
    apply_privacy(private, {"dp-mode": "server", "noise-multiplier": 1.0, "clipping-norm": 0.5})
    assert private.strategy.strategy.bounds == UpdateBounds(0.0, 3.0, 500.0)  # type: ignore[attr-defined]
