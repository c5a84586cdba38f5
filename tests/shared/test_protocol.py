"""The one run_config reader (vane.shared.protocol): precedence, source restriction and the type rules.

The client (ClientSettings) and the server (ServerSettings, PrivacySettings, SecAggSettings) read
with the same rules, so the same bad value fails the same way on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from vane.shared.errors import ConfigError
from vane.shared.protocol import (
    MESSAGE_CONFIG,
    RUN_CONFIG,
    coerce_setting,
    only_from,
    read_settings,
    settings_values,
    to_config,
)


@dataclass(frozen=True)
class Knobs:
    epochs: int = 1
    rate: float = 0.5
    enabled: bool = False
    name: str = "plain"
    message_only: float = field(default=0.0, metadata=only_from(MESSAGE_CONFIG))


def _read(message=None, run=None) -> Knobs:
    return read_settings(Knobs, (MESSAGE_CONFIG, message or {}), (RUN_CONFIG, run or {}))


# --- precedence -------------------------------------------------------------------------
def test_the_first_source_holding_a_key_wins_then_the_next_then_the_default():
    knobs = _read({"epochs": 3}, {"epochs": 7, "rate": 0.25})
    assert (knobs.epochs, knobs.rate, knobs.enabled, knobs.name) == (3, 0.25, False, "plain")


def test_a_field_restricted_to_the_message_config_ignores_run_config():
    assert _read(run={"message-only": 0.5}).message_only == 0.0
    assert _read(message={"message-only": 0.5}).message_only == 0.5


def test_kebab_case_keys_map_to_fields_and_unknown_keys_are_ignored():
    @dataclass(frozen=True)
    class Two:
        local_epochs: int = 1

    assert settings_values(Two, (RUN_CONFIG, {"local-epochs": 4, "local_epochs": 9, "other": "x"})) == {
        "local_epochs": 4}
    assert to_config(Two(5)) == {"local-epochs": 5}


# --- bool -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), (1, True), (0, False),
    ("true", True), ("FALSE", False), ("Yes", True), ("no", False), ("1", True), ("0", False),
])
def test_bool_accepts_bools_zero_one_and_the_six_words(value, expected):
    assert coerce_setting(RUN_CONFIG, "enabled", value, bool) is expected


@pytest.mark.parametrize("value", ["maybe", "", 2, -1, 0.5, 1.0, None])
def test_bool_refuses_anything_else_naming_key_value_and_expectation(value):
    with pytest.raises(ConfigError, match=r"enabled is .*expected a boolean"):
        _read(run={"enabled": value})


def test_maybe_raises_on_the_client_and_on_the_server_alike():
    from vane.client.app import ClientSettings

    with pytest.raises(ConfigError, match="message config delta-float16 is 'maybe'; expected a boolean"):
        ClientSettings.read({"delta-float16": "maybe"}, {})
    with pytest.raises(ConfigError, match="run_config delta-float16 is 'maybe'; expected a boolean"):
        ClientSettings.read({}, {"delta-float16": "maybe"})


def test_maybe_raises_in_every_server_settings_class():
    pytest.importorskip("flwr")
    from vane.server.config import PrivacySettings, SecAggSettings, ServerSettings

    with pytest.raises(ConfigError, match="run_config resume is 'maybe'"):
        ServerSettings.from_run_config({"resume": "maybe"})
    with pytest.raises(ConfigError, match="run_config adaptive-clipping is 'maybe'"):
        PrivacySettings.from_run_config({"adaptive-clipping": "maybe"})
    with pytest.raises(ConfigError, match="run_config secure-aggregation is 'maybe'"):
        SecAggSettings.from_run_config({"secure-aggregation": "maybe"})


# --- int and float ---------------------------------------------------------------------------
def test_int_accepts_integers_and_integral_floats():
    assert _read(run={"epochs": 4}).epochs == 4
    knobs = _read(run={"epochs": 4.0})
    assert knobs.epochs == 4 and isinstance(knobs.epochs, int)


@pytest.mark.parametrize("value", [2.5, True, "3", float("inf"), float("nan")])
def test_int_refuses_fractions_bools_strings_and_non_finite(value):
    with pytest.raises(ConfigError, match=r"epochs is .*expected an integer"):
        _read(run={"epochs": value})


def test_float_accepts_integers_as_floats():
    knobs = _read(message={"rate": 2})
    assert knobs.rate == 2.0 and isinstance(knobs.rate, float)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), True, "0.1", None])
def test_float_must_be_a_finite_number(value):
    with pytest.raises(ConfigError, match=r"rate is .*expected a finite number"):
        _read(run={"rate": value})


def test_str_refuses_numbers():
    with pytest.raises(ConfigError, match="name is 3; expected a string"):
        _read(run={"name": 3})


def test_the_error_names_the_source_that_gave_the_value():
    with pytest.raises(ConfigError, match=r"^message config epochs is 2.5; expected an integer$"):
        _read({"epochs": 2.5}, {"epochs": 2})


# --- the synthetic vocabulary the server defaults to ----------------------------------------
def test_the_synthetic_population_uses_the_shared_category_names():
    from vane.shared.synthetic_vocab import SYNTHETIC_CATEGORIES
    from vane.simulations.synthetic import CATEGORY_VOCABULARY, SyntheticPopulation

    assert tuple(CATEGORY_VOCABULARY) == SYNTHETIC_CATEGORIES
    assert SyntheticPopulation(1, seed=0).categories == list(SYNTHETIC_CATEGORIES)


def test_the_server_default_taxonomy_is_the_synthetic_populations():
    pytest.importorskip("flwr")
    from vane.server.config import default_taxonomy
    from vane.shared.taxonomy import Taxonomy
    from vane.simulations.synthetic import SyntheticPopulation

    assert default_taxonomy().version == Taxonomy(SyntheticPopulation(1, seed=0).categories).version
