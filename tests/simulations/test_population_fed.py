"""Population statistics by federated analytics in a real Flower simulation (the real ClientApp and ServerApp).

Without DP the federated statistics equal the plain sum of the devices' counts (the central
``population_stats`` of the same histories), to SecAgg+'s stated quantisation tolerance with SecAgg+ on
and to float32 with it off. Under SecAgg+ no reply carries any device's count vector or a scaled copy
(the vector audit), and no user string (the message audit). With DP the sum differs by Gaussian noise
of std ``z·C`` and its ε is recorded. Each simulation runs in a fresh process.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from vane.client.population import clip_counts
from vane.shared.population import population_stats
from vane.shared.population_artifact import count_vector, stats_vector
from vane.shared.taxonomy import Taxonomy
from vane.simulations.audit import Needles, check_messages
from vane.simulations.audit.messages import PrivacyLeakError
from vane.simulations.audit.vectors import ReplyCapture, check_vectors
from vane.simulations.mods import MessageRecorder
from vane.simulations.population_fed import federated_population_stats
from vane.simulations.synthetic import SyntheticPopulation

pytestmark = pytest.mark.slow

USERS = 6


@pytest.fixture(scope="module")
def population():
    pytest.importorskip("ray")
    pop = SyntheticPopulation(USERS, events_per_user=(40, 90), seed=3)
    return dict(pop.users), Taxonomy(pop.categories)


def _device_vectors(users, taxonomy):
    """Each partition's count vector as it would cross in the clear (partitions follow the sorted user ids)."""
    return {pid: count_vector(users[uid], taxonomy) for pid, uid in enumerate(sorted(users))}


def _assert_equal_to_central(stats, users, taxonomy, tolerance):
    got, want = stats_vector(stats, taxonomy), stats_vector(population_stats(users.values()), taxonomy)
    assert np.max(np.abs(got - want)) <= tolerance + 1e-9
    v = len(taxonomy)
    assert np.array_equal(got[1:v], want[1:v])  # whole counts lie on SecAgg+'s grid: exact
    assert stats.categories == population_stats(users.values()).categories


def test_secure_aggregation_sums_exactly_and_no_reply_carries_a_device_vector(population, tmp_path):
    users, taxonomy = population
    capture, log = tmp_path / "payloads", tmp_path / "messages.jsonl"
    mods = [MessageRecorder(log, Needles.of(users)), ReplyCapture(capture)]

    stats, info = federated_population_stats(users, taxonomy, secure_aggregation=True, dp_noise=None, seed=0,
                                             client_mods=mods, isolated=True)

    assert info["devices"] == USERS and info["secure-aggregation"] and info["epsilon"] == 0.0
    assert 0 < info["tolerance"] <= USERS * 16384.0 / 2**29
    _assert_equal_to_central(stats, users, taxonomy, info["tolerance"])
    summary = check_vectors(capture, _device_vectors(users, taxonomy))
    assert summary["payloads"] >= USERS * 3  # public keys, key shares, masked vectors, unmask shares
    assert check_messages(log)["passed"]
    assert info["bytes-per-device"] > 0


def test_without_secure_aggregation_the_sum_is_plain_and_the_audit_sees_the_vectors(population, tmp_path):
    users, taxonomy = population
    capture = tmp_path / "payloads"

    stats, info = federated_population_stats(users, taxonomy, secure_aggregation=False, dp_noise=None, seed=0,
                                             client_mods=[ReplyCapture(capture)], isolated=True)

    assert not info["secure-aggregation"]
    _assert_equal_to_central(stats, users, taxonomy, info["tolerance"])
    with pytest.raises(PrivacyLeakError, match="count vector"):  # the control: in the clear, the audit finds them
        check_vectors(capture, _device_vectors(users, taxonomy))


def test_dp_noise_of_the_right_scale_under_secagg_and_its_epsilon_is_recorded(population):
    from vane.server.analytics import Quantisation
    from vane.server.privacy.accounting import population_epsilon
    from vane.shared.population_artifact import vector_size

    users, taxonomy = population
    z, clip = 1.0, 8.0

    stats, info = federated_population_stats(users, taxonomy, secure_aggregation=True, dp_noise=z, seed=0,
                                             clip_norm=clip, isolated=True)

    artifact = info["artifact"]
    assert info["epsilon"] == pytest.approx(population_epsilon(z, USERS, 1e-5)) == artifact.dp["epsilon"]
    assert 0 < info["epsilon"] < np.inf and artifact.dp["noise-std"] == z * clip
    slack = np.sqrt(vector_size(taxonomy)) * Quantisation(USERS, 16384.0).step  # SecAgg+'s rounding room
    assert artifact.clip["l2-norm"] == clip and artifact.secure_aggregation
    clipped = np.sum([clip_counts(v, 16384.0, clip - slack) for v in _device_vectors(users, taxonomy).values()],
                     axis=0)
    noise = artifact.vector - clipped
    assert 0.75 * z * clip < float(np.std(noise)) < 1.25 * z * clip  # 182 entries: the std within ±25%
    assert abs(float(np.mean(noise))) < 3 * z * clip / np.sqrt(noise.size)
    assert stats.popularity == artifact.stats(taxonomy).popularity  # negative noised counts count as absent


def test_a_training_run_with_population_stats_publishes_and_ships_them(population, tmp_path):
    """``population-stats``: the analytics round first, the artifact beside the model, and on every device."""
    pytest.importorskip("tensorflow")
    from vane.client.app import SIM_KEY_FILE, sim_store_path
    from vane.client.population import kept_population
    from vane.client.tracker import InterestTracker
    from vane.server.model import export_training_model
    from vane.shared.population_artifact import PopulationArtifact
    from vane.shared.spec import ModelSpec
    from vane.simulations.federation import run_isolated

    users, taxonomy = population
    four = dict(sorted(users.items())[:4])
    spec = ModelSpec(num_categories=len(taxonomy), item_buckets=256, token_buckets=128)
    result = run_isolated(users=four, taxonomy=taxonomy, spec=spec, rounds=1, fraction=1.0, out_dir=tmp_path,
                          model_blob=export_training_model(spec), num_cpus=2, progress=False, local_epochs=1,
                          server_config={"population-stats": True})

    (entry,) = json.loads((tmp_path / "registry" / "population.json").read_text())
    published = PopulationArtifact.load(entry["path"], taxonomy)
    assert published.devices == 4 and not published.secure_aggregation
    _assert_equal_to_central(published.stats(taxonomy), four, taxonomy, published.tolerance)
    assert result.round(1)["aggregated-nodes"]
    from vane.server.registry import ModelRegistry

    assert ModelRegistry(tmp_path / "registry").latest().metrics["population-devices"] == 4.0
    for pid in range(4):
        with InterestTracker.open(sim_store_path(tmp_path / "devices", pid),
                                  key_file=tmp_path / "devices" / SIM_KEY_FILE) as tracker:
            kept = kept_population(tracker)
            assert kept is not None and kept.version == published.version
            assert np.array_equal(kept.vector, published.vector)
