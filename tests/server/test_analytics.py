"""The population round's settings, SecAgg+ grid and accounting, and publishing the artifact (no Flower run here)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from vane.server.analytics import (
    PopulationSettings,
    PopulationSum,
    Quantisation,
    population_config,
    publish_population,
)
from vane.server.privacy.accounting import ReleaseAccounting, population_epsilon
from vane.shared import protocol as p
from vane.shared.errors import ConfigError, PrivacyConfigError
from vane.shared.population_artifact import PopulationArtifact, population_version, vector_size
from vane.shared.taxonomy import Taxonomy

TAX = Taxonomy(["a", "b", "c"])


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"population-entry-cap": 0}, "expected a cap > 0"),
        ({"population-clip-norm": -1}, "a clip norm >= 0"),
        ({"population-noise-multiplier": 1.0}, "DP noise needs a positive clip norm"),
        ({"dp-delta": 1.5}, "dp-delta is 1.5"),
        ({"population-stats": "maybe"}, "population-stats is 'maybe'"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(config, words):
    with pytest.raises(ConfigError, match=words):  # PrivacyConfigError is a ConfigError
        PopulationSettings.from_run_config(config)


@pytest.mark.parametrize("devices", [2, 6, 815, 1000, 4000])
def test_the_secagg_grid_never_wraps_the_modulus_and_counts_sit_on_it(devices):
    quant = Quantisation(devices, 16384.0)
    q = quant.quantization_range

    assert devices * q < 2**32 <= devices * 2 * q or q == 2**30  # the largest power of two that fits
    assert quant.clipping_range == 8192.0
    assert (1.0 / quant.step).is_integer()  # whole counts are multiples of the step: exact through SecAgg+


def test_the_dp_clip_leaves_room_for_the_rounding_or_is_refused():
    settings = PopulationSettings(True, 16384.0, 64.0, 1.0)
    quant = Quantisation(6, 16384.0)

    config = population_config(TAX, settings, quant, 0)

    assert config[p.POPULATION_CLIP_NORM_KEY] == pytest.approx(64.0 - math.sqrt(vector_size(TAX)) * quant.step)
    assert config[p.POPULATION_CENTER_KEY] == 8192.0 and json.loads(config[p.TAXONOMY_KEY]) == TAX.to_dict()
    assert population_config(TAX, settings, None, 0)[p.POPULATION_CLIP_NORM_KEY] == 64.0  # in the clear: no slack
    with pytest.raises(PrivacyConfigError, match="rounding slack"):
        population_config(TAX, PopulationSettings(True, 2.0**30, 1.0, 1.0), Quantisation(1000, 2.0**30), 0)


def _result(vector, dtype=np.float32):
    res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([np.asarray(vector, dtype)]), 1, {})
    return (type("Proxy", (), {"node_id": 7})(), res)


def test_in_the_clear_the_strategy_sums_and_refuses_a_reply_of_the_wrong_size():
    size = vector_size(TAX)
    strategy = PopulationSum({}, 2, size, 0.0, secure=False)

    strategy.aggregate_fit(1, [_result(np.ones(size)), _result(np.arange(size)), _result(np.ones(3))], [])

    assert strategy.devices == 2 and np.array_equal(strategy.total, 1 + np.arange(size))
    assert "expected 20 finite counts" in strategy.failures[0]


def test_under_secagg_the_unmasked_mean_becomes_the_sum_on_the_grid():
    size, n, quant = vector_size(TAX), 3, Quantisation(3, 64.0)
    counts = np.arange(size, dtype=float)  # the sum of three devices
    mean_centred = counts / n - quant.clipping_range + 1e-9  # what SecAgg+ unmasks, with a float error
    strategy = PopulationSum({}, n, size, quant.clipping_range, secure=True, step=quant.step)

    strategy.aggregate_fit(1, [_result(mean_centred, np.float64)] * n, [])  # SecAgg+ unmasks in float64

    assert np.array_equal(strategy.total, counts)


def test_population_epsilon_is_one_gaussian_release_of_every_device():
    eps = population_epsilon(1.0, 100, 1e-5)

    assert eps == pytest.approx(ReleaseAccounting("no-amplification", "add-or-remove-one", 1.0, 100, 100)
                                .epsilon(1, 1e-5))
    assert population_epsilon(2.0, 100, 1e-5) < eps < population_epsilon(1.0, 100, 1e-5, releases=2)
    assert population_epsilon(0.0, 100, 1e-5) == math.inf


def test_publishing_lists_each_version_once_beside_the_model(tmp_path):
    artifact = PopulationArtifact(np.ones(vector_size(TAX)), TAX.version, len(TAX), 4, population_version(0, TAX))

    path = publish_population(tmp_path, artifact)
    publish_population(tmp_path, artifact)

    (entry,) = json.loads((tmp_path / "population.json").read_text())
    assert entry["version"] == artifact.version and entry["devices"] == 4 and entry["path"] == str(path.resolve())
    assert np.array_equal(PopulationArtifact.load(path, TAX).vector, artifact.vector)
