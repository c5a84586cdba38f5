"""How the ClientApp reads its round settings (message config, then run_config, then defaults)."""

from __future__ import annotations

import pytest
from vane.client.app import ClientSettings
from vane.shared.errors import ConfigError


def test_message_config_wins_over_run_config_which_wins_over_defaults():
    s = ClientSettings.read({"local-epochs": 3}, {"local-epochs": 7, "learning-rate": 0.05, "delta-float16": "true"})
    assert (s.local_epochs, s.learning_rate, s.delta_float16, s.seed) == (3, 0.05, True, 0)


def test_proximal_mu_comes_only_from_the_message_config():
    # flwr run declares FedProx's proximal-mu in run_config whatever the strategy; a FedAvg round must not use it
    assert ClientSettings.read({}, {"proximal-mu": 0.01}).proximal_mu == 0.0
    assert ClientSettings.read({"proximal-mu": 0.01}, {}).proximal_mu == 0.01


@pytest.mark.parametrize(("config", "words"), [
    ({"local-epochs": 0}, "local-epochs is 0"),
    ({"local-epochs": 2.5}, "local-epochs is 2.5"),
    ({"learning-rate": -1.0}, "learning-rate"),
    ({"local-epochs": "abc"}, "local-epochs is 'abc'; expected an integer"),
    ({"holdout-fraction": 1.0}, "holdout-fraction is 1.0; expected 0 <= value < 1"),
    ({"holdout-fraction": -0.1}, "holdout-fraction is -0.1; expected 0 <= value < 1"),
])
def test_bad_settings_name_the_key(config, words):
    with pytest.raises(ConfigError, match=words):
        ClientSettings.read(config, {})


@pytest.mark.parametrize(("config", "run_config", "words"), [
    ({"evaluate-model-only": "maybe"}, {}, "evaluate-model-only is 'maybe'"),
    ({}, {"delta-float16": "maybe"}, "delta-float16 is 'maybe'"),
    ({"holdout-fraction": float("nan")}, {}, "holdout-fraction is nan"),
])
def test_values_of_the_wrong_type_raise_instead_of_reading_as_a_default(config, run_config, words):
    with pytest.raises(ConfigError, match=words):
        ClientSettings.read(config, run_config)
