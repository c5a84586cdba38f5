"""Client-level DP: settings validation, RDP accounting against dp-accounting, and the budget stop."""

from __future__ import annotations

import itertools
import json

import pytest
from vane.server.config import PrivacySettings
from vane.server.privacy import PrivacyLedger, sampled_clients
from vane.shared.errors import PrivacyConfigError

pytest.importorskip("dp_accounting")


def _settings(**kw):
    base = {"dp-mode": "server", "noise-multiplier": 1.0, "clipping-norm": 0.5, "dp-delta": 1e-5}
    return PrivacySettings.from_run_config({**base, **kw}, population=100)


def _independent_epsilon(noise: float, rounds: int, delta: float) -> float:
    from dp_accounting import dp_event
    from dp_accounting.rdp import RdpAccountant

    accountant = RdpAccountant()  # add-or-remove-one, default orders
    accountant.compose(dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(noise), rounds))
    return accountant.get_epsilon(delta)


def _independent_sampled_epsilon(noise: float, sampled: int, population: int, rounds: int, delta: float) -> float:
    """Replace-one, fixed-size sample without replacement; the sum's sensitivity is 2C, so σ/Δ = z/2."""
    from dp_accounting import dp_event
    from dp_accounting.privacy_accountant import NeighboringRelation
    from dp_accounting.rdp import RdpAccountant

    accountant = RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_ONE)
    release = dp_event.SampledWithoutReplacementDpEvent(population, sampled, dp_event.GaussianDpEvent(noise / 2))
    accountant.compose(dp_event.SelfComposedDpEvent(release, rounds))
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("clipping-norm", 0.0, "clipping-norm is 0.0"),
        ("clipping-norm", -1.0, "clipping-norm is -1.0"),
        ("noise-multiplier", -0.5, "noise-multiplier is -0.5"),
        ("dp-delta", 0.01, "dp-delta is 0.01"),  # = 1/population
        ("dp-delta", 0.5, "dp-delta is 0.5"),
        ("dp-mode", "local", "dp-mode is 'local'"),
    ],
)
def test_nonsensical_settings_are_refused_with_the_key_and_value(key, value, words):
    with pytest.raises(PrivacyConfigError, match=words):
        _settings(**{key: value})


def test_dp_off_ignores_population_and_delta():
    assert not PrivacySettings.from_run_config({"dp-delta": 0.5}).enabled


def test_epsilon_grows_with_rounds_and_falls_with_noise():
    low, high = PrivacyLedger(_settings(), 100), PrivacyLedger(_settings(**{"noise-multiplier": 2.0}), 100)
    low_curve, high_curve = low.epsilon_curve(5), high.epsilon_curve(5)
    assert all(a < b for a, b in itertools.pairwise(low_curve))
    assert all(h < lo for h, lo in zip(high_curve, low_curve, strict=True))
    assert low.rounds == 0 and low.epsilon == 0.0  # epsilon_curve leaves the ledger untouched


@pytest.mark.parametrize(("noise", "rounds"), [(0.5, 1), (1.0, 3), (2.0, 10)])
def test_epsilon_matches_an_independent_dp_accounting_computation(noise, rounds):
    ledger = PrivacyLedger(_settings(**{"noise-multiplier": noise}), sampled_clients(100, 1.0, 2))
    eps = ledger.record_round(rounds)
    assert eps == pytest.approx(_independent_epsilon(noise, rounds, 1e-5), rel=1e-9)


@pytest.mark.parametrize(("noise", "rounds"), [(1.0, 4), (2.0, 10)])
def test_sampled_epsilon_matches_dp_accounting_without_replacement(noise, rounds):
    ledger = PrivacyLedger(_settings(**{"noise-multiplier": noise}), sampled_clients(100, 0.1, 2))
    eps = ledger.record_round(rounds)
    assert ledger.sample_size == 10
    assert eps == pytest.approx(_independent_sampled_epsilon(noise, 10, 100, rounds, 1e-5), rel=1e-9)


def test_sampling_a_tenth_spends_less_than_the_bound_without_amplification():
    ledger = PrivacyLedger(_settings(), sampled_clients(100, 0.1, 2))
    ledger.record_round(5)
    # the bound: the same replace-one release (σ/Δ = z/2) with every client in all 5 rounds
    assert ledger.epsilon_no_amplification == pytest.approx(_independent_epsilon(0.5, 5, 1e-5), rel=1e-9)
    assert ledger.epsilon < ledger.epsilon_no_amplification / 2


def test_with_every_client_sampled_both_figures_are_the_add_or_remove_gaussian():
    ledger = PrivacyLedger(_settings(), sampled_clients(100, 1.0, 2))
    ledger.record_round(3)
    assert ledger.accounting is not None and ledger.accounting.neighboring_relation == "add-or-remove-one"
    assert ledger.epsilon == ledger.epsilon_no_amplification == pytest.approx(_independent_epsilon(1.0, 3, 1e-5))


def test_budget_stop_counts_the_sampled_epsilon():
    sample = sampled_clients(100, 0.1, 2)
    curve = PrivacyLedger(_settings(), sample).epsilon_curve(4)
    target = (curve[2] + curve[3]) / 2  # three rounds fit, the fourth would exceed
    ledger = PrivacyLedger(_settings(**{"target-epsilon": target}), sample)
    assert ledger.epsilon_after(3, amplified=False) > target  # without amplification even 3 would not fit
    assert ledger.affordable_rounds(6) == 3
    assert not ledger.would_exceed(3) and ledger.would_exceed(4)


def test_no_noise_means_infinite_epsilon():
    ledger = PrivacyLedger(_settings(**{"noise-multiplier": 0.0}), 100)
    assert ledger.record_round() == float("inf")


def test_affordable_rounds_stop_before_the_target_is_exceeded():
    curve = PrivacyLedger(_settings(), 100).epsilon_curve(10)
    target = (curve[3] + curve[4]) / 2  # four rounds fit, the fifth would exceed
    ledger = PrivacyLedger(_settings(**{"target-epsilon": target}), 100)
    assert ledger.affordable_rounds(10) == 4
    assert ledger.affordable_rounds(3) == 3


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_dp_run_stops_before_target_epsilon_and_records_epsilon_per_round(tmp_path):
    pytest.importorskip("ray")
    from vane.server.model import export_training_model
    from vane.shared.spec import ModelSpec
    from vane.shared.taxonomy import Taxonomy
    from vane.simulations.federation import run_isolated
    from vane.simulations.synthetic import SyntheticPopulation

    users = 4
    dp = {"dp-mode": "server", "noise-multiplier": 1.0, "clipping-norm": 0.5, "dp-delta": 1e-3}
    curve = PrivacyLedger(PrivacySettings.from_run_config(dp, population=users), users).epsilon_curve(3)
    target = (curve[1] + curve[2]) / 2  # two rounds fit, the third would exceed
    pop = SyntheticPopulation(users, seed=3)
    taxonomy = Taxonomy(pop.categories)
    spec = ModelSpec(num_categories=len(taxonomy), item_buckets=512, token_buckets=256)
    result = run_isolated(  # its own process: other tests in this session run simulations too
        users=pop.users, taxonomy=taxonomy, spec=spec, rounds=3, fraction=1.0, out_dir=tmp_path, local_epochs=1,
        learning_rate=0.02,
        num_cpus=2, progress=False, model_blob=export_training_model(spec),
        server_config={**dp, "target-epsilon": target, "evaluate-initial": False},
    )
    saved = json.loads(result.results_path.read_text())
    eps = [r["train"]["dp-epsilon"] for r in saved["rounds"] if r["round"] > 0]
    assert [r["train"]["dp-epsilon-no-amplification"] for r in saved["rounds"] if r["round"] > 0] == eps
    assert [r["round"] for r in saved["rounds"]] == [1, 2]
    assert eps == pytest.approx(curve[:2], rel=1e-9)
    assert max(eps) <= target
    assert saved["config"]["target-epsilon"] == target and saved["config"]["completed-rounds"] == 2
    registry = json.loads((tmp_path / "registry" / "registry.json").read_text())
    assert [v["metrics"]["dp-epsilon"] for v in registry] == pytest.approx(curve[:2], rel=1e-9)


@pytest.mark.slow
def test_a_resumed_adaptive_run_continues_from_the_checkpointed_clipping_norm(tmp_path):
    """The clipping norm moved by adaptive clipping is saved with each checkpoint and restored on resume."""
    from vane.server.checkpoint import CheckpointStore
    from vane.server.config import ServerSettings
    from vane.server.privacy import CLIP_STATE_KEY, apply_privacy
    from vane.server.run import FederationRun

    dp = {"dp-mode": "server", "noise-multiplier": 0.5, "clipping-norm": 1.0, "adaptive-clipping": True,
          "clipped-count-stddev": 2.0,
          "dp-delta": 1e-3}
    fresh = FederationRun(ServerSettings(out_dir=str(tmp_path), num_server_rounds=4, min_available_nodes=10))
    apply_privacy(fresh, dp)
    assert fresh.strategy.clipping_norm == 1.0
    fresh.strategy.clipping_norm = 0.37  # as if three rounds of quantile tracking had moved it
    state = fresh.strategy.state_arrays()
    assert float(state[CLIP_STATE_KEY][0]) == 0.37
    bundle = fresh.bundle
    CheckpointStore(tmp_path).save(3, bundle.weights, bundle.spec, bundle.taxonomy, bundle.blob, [], state, {})

    resumed = FederationRun(ServerSettings(out_dir=str(tmp_path), num_server_rounds=4, min_available_nodes=10,
                                           resume=True))
    apply_privacy(resumed, dp)
    assert resumed.start_round == 3
    assert resumed.strategy.clipping_norm == pytest.approx(0.37)
    assert resumed.strategy.ledger.rounds == 3
    # Fixed clipping ignores a saved norm: the configured one is the bound.
    fixed = FederationRun(ServerSettings(out_dir=str(tmp_path), num_server_rounds=4, min_available_nodes=10,
                                         resume=True))
    apply_privacy(fixed, {**dp, "adaptive-clipping": False})
    assert fixed.strategy.clipping_norm == 1.0
