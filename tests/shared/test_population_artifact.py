"""Population statistics over a taxonomy: the device vector layout, the artifact, and ``stats.without(own)``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest
from vane.shared.errors import TaxonomyError
from vane.shared.events import OTHER, Event
from vane.shared.population import PopulationStats, population_stats
from vane.shared.population_artifact import (
    MAGIC,
    PopulationArtifact,
    PopulationArtifactError,
    count_vector,
    population_version,
    stats_vector,
    vector_size,
    vector_stats,
)
from vane.shared.taxonomy import Taxonomy
from vane.simulations.datasets import MOVIELENS_DIR, TAOBAO_PATH, load_dataset
from vane.simulations.split import category_counts


def _event(cats: Sequence[str], t: float) -> Event:
    return Event(item_id=f"i{t:g}", categories=tuple(cats), timestamp=datetime.fromtimestamp(1.7e9 + t, UTC))


def _assert_same_stats(a: PopulationStats, b: PopulationStats, tol: float = 1e-9) -> None:
    assert a.categories == b.categories
    assert a.popularity == pytest.approx(b.popularity, abs=tol)
    assert set(a.transitions) == set(b.transitions)
    for row in a.transitions:
        assert a.transitions[row] == pytest.approx(b.transitions[row], abs=tol), row


USERS = [
    [_event(["a"], 0), _event(["b", "c"], 1), _event(["a"], 2), _event(["c"], 3)],
    [_event(["c"], 0), _event(["c", "a"], 5), _event(["b"], 6)],
    [_event(["b"], 0), _event(["a", "b", "c"], 7)],
]
TAX = Taxonomy(["a", "b", "c"])


def test_summed_device_vectors_equal_the_central_statistics():
    total = np.sum([count_vector(u, TAX) for u in USERS], axis=0)

    assert total.shape == (vector_size(TAX),) == (4 + 16,)
    _assert_same_stats(vector_stats(total, TAX), population_stats(USERS))
    assert np.array_equal(stats_vector(population_stats(USERS), TAX), total)


@pytest.mark.parametrize("dataset", ["taobao", "movielens"])
def test_device_vectors_sum_to_the_central_statistics_on_a_real_slice(dataset):
    path = TAOBAO_PATH if dataset == "taobao" else MOVIELENS_DIR
    if not path.exists():
        pytest.skip(f"{path} is missing")
    users = load_dataset(dataset, max_users=30).users
    taxonomy = Taxonomy.from_counts(category_counts(users), max_size=10_000)  # every category: nothing becomes other
    total = np.sum([count_vector(events, taxonomy) for events in users.values()], axis=0)

    _assert_same_stats(vector_stats(total, taxonomy), population_stats(users.values()), tol=1e-6)


def test_categories_outside_the_taxonomy_count_as_other():
    vec = count_vector([_event(["a", "zz"], 0), _event(["yy"], 1)], TAX)
    v = len(TAX)

    assert vec[TAX.index(OTHER)] == 2.0 and vec[TAX.index("a")] == 1.0  # "zz" and "yy": one other per event
    assert vec[v + TAX.index("a") * v + TAX.index(OTHER)] == 0.5
    assert vec[v + TAX.index(OTHER) * v + TAX.index(OTHER)] == 0.5


def _artifact(**changes) -> PopulationArtifact:
    total = np.sum([count_vector(u, TAX) for u in USERS], axis=0)
    fields = {"vector": total, "taxonomy_version": TAX.version, "taxonomy_size": len(TAX), "devices": 3,
              "version": population_version(0, TAX), "secure_aggregation": True,
              "clip": {"entry-cap": 16.0, "l2-norm": 0.0}, "dp": {"epsilon": 2.5, "delta": 1e-5}, "tolerance": 0.01}
    return PopulationArtifact(**{**fields, **changes})


def test_artifact_round_trips_with_its_manifest(tmp_path):
    artifact = _artifact()
    path = artifact.save(tmp_path / "stats.vpop")

    back = PopulationArtifact.load(path, TAX)

    assert np.array_equal(back.vector, artifact.vector)
    assert (back.version, back.devices, back.secure_aggregation, back.tolerance) == (artifact.version, 3, True, 0.01)
    assert back.clip == {"entry-cap": 16.0, "l2-norm": 0.0} and back.dp["epsilon"] == 2.5
    assert back.created == artifact.created
    _assert_same_stats(back.stats(TAX), population_stats(USERS))
    assert artifact.version == f"pop-r0000-{TAX.version[:8]}"


def test_artifact_refuses_another_taxonomy_naming_both_hashes():
    other = Taxonomy(["a", "b", "d"])
    data = _artifact().to_bytes()

    with pytest.raises(TaxonomyError, match=f"{TAX.version}.*{other.version}"):
        PopulationArtifact.from_bytes(data, other)
    with pytest.raises(TaxonomyError, match="not this taxonomy"):
        PopulationArtifact.from_bytes(data).stats(other)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-3] + bytes([b[-3] ^ 0xFF]) + b[-2:], "SHA-256"),  # a flipped bit in a value
        (lambda b: b[:-12], "promises"),  # a truncated body
        (lambda b: b"NOTAVANE" + b[8:], "not a Vane population artifact"),
        (lambda b: b[:10], "truncated|exceeds"),
        (lambda b: b[: len(MAGIC) + 4] + b"\xff" + b[len(MAGIC) + 5 :], "not UTF-8 JSON"),
    ],
)
def test_a_damaged_artifact_is_refused_with_a_clear_error(tmp_path, damage, message):
    path = tmp_path / "stats.vpop"
    path.write_bytes(damage(_artifact().to_bytes()))

    with pytest.raises(PopulationArtifactError, match=message):
        PopulationArtifact.load(path, TAX)


def test_artifact_rejects_a_vector_of_the_wrong_size_or_non_finite():
    with pytest.raises(PopulationArtifactError, match="needs 20 entries"):
        _artifact(vector=np.zeros(7))
    with pytest.raises(PopulationArtifactError, match="non-finite"):
        _artifact(vector=np.full(20, np.nan))


def test_without_own_counts_leaves_the_rest_of_the_population():
    everyone = population_stats(USERS)
    own = population_stats(USERS[:1])

    rest = everyone.without(own)

    _assert_same_stats(rest, population_stats(USERS[1:]))
    assert everyone.without(population_stats([])).popularity == everyone.popularity


def test_without_drops_remainders_within_the_tolerance():
    noisy = PopulationStats.from_counts({"a": 3.004, "b": 2.0}, {"a": {"b": 1.003, "a": 2.0}})
    own = PopulationStats.from_counts({"a": 3.0}, {"a": {"b": 1.0}})

    rest = noisy.without(own, tolerance=0.01)

    assert rest.popularity == {"b": 2.0}
    assert rest.transitions == {"a": {"a": 2.0}}
    with pytest.raises(ValueError, match="tolerance is -1"):
        noisy.without(own, tolerance=-1)
