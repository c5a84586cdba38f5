"""Every run_config setting of the ServerApp, read by the one reader of :mod:`vane.shared.protocol`.

Light on purpose (shared only: no Flower, no TensorFlow), so tools that only need the settings
(:mod:`vane.server.deploy`, the CLI) import it cheaply.

- :class:`ServerSettings`: rounds, strategy, sampling, what the clients train with, output;
- :class:`PrivacySettings`: client-level differential privacy (:mod:`vane.server.privacy`);
- :class:`SecAggSettings`: secure aggregation (:mod:`vane.server.privacy.secagg`).

Each is a frozen dataclass whose run_config key is the field name in kebab-case, with the
default Flower's ``run_simulation`` needs (it leaves ``run_config`` empty). Also here: the
model version a client installs (:func:`model_version_of`) and the vocabulary a server uses when
it is given none (:func:`default_taxonomy`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vane.shared.blend import mix_grid
from vane.shared.errors import ConfigError, PrivacyConfigError
from vane.shared.protocol import RUN_CONFIG, TRAIN_PARTS, read_settings, settings_values, to_config
from vane.shared.spec import ModelSpec
from vane.shared.synthetic_vocab import SYNTHETIC_CATEGORIES
from vane.shared.taxonomy import Taxonomy

#: Values of the ``strategy`` setting (:func:`vane.server.strategies.make_strategy`).
STRATEGIES = ("fedavg", "fedadam", "fedprox", "fedtrimmedavg", "krum")
#: Values of the ``dp-mode`` setting.
DP_MODES = ("off", "server", "client")


@dataclass(frozen=True)
class ServerSettings:
    """Every ServerApp tunable; the run_config key is the field name in kebab-case.

    Parameters
    ----------
    num_server_rounds : int, default 3
        Total rounds of the run (a resumed run counts the rounds already done).
    strategy : {"fedavg", "fedadam", "fedprox", "fedtrimmedavg", "krum"}, default "fedavg"
    fraction_train, fraction_evaluate : float, default 1.0
        Fraction of connected nodes sampled per round.
    min_train_nodes, min_evaluate_nodes, min_available_nodes : int, default 2
    local_epochs : int, default 1
        Epochs each client trains per round.
    learning_rate : float, default 0.0
        Client learning rate; 0 means the ModelSpec's.
    learning_rate_decay : float, default 1.0
        The client learning rate of round ``r`` is ``learning_rate * learning_rate_decay ** (r - 1)``
        (``learning_rate`` 0: the ModelSpec's). Below 1 it shrinks the local steps as the global model
        settles, so the devices' pulls towards their own optima (client drift) shrink too.
    proximal_mu : float, default 0.01
        FedProx proximal weight.
    server_learning_rate : float, default 0.01
        FedAdam's server step (eta).
    trim_beta : float, default 0.2
        FedTrimmedAvg's cut fraction per tail.
    num_malicious_nodes : int, default 0
        Krum's assumed attackers.
    delta_float16 : bool, default False
        Clients send float16 deltas (half the upload).
    seed : int, default 0
        Seeds client shuffling together with the round, so runs are reproducible.
    holdout_fraction : float, default 0.1
        Newest fraction of each client's events kept for evaluation.
    out_dir : str, default "vane-run"
        Checkpoints, metrics.json and the registry go here.
    registry_dir : str, default ""
        Model registry directory; empty means ``OUT/registry``.
    encoder_version : str, default ""
        The text encoder (a version in ``encoders.json`` beside the model registry, published by ``vane
        server export-encoder OUT --registry DIR``) the devices embed with; required when the spec reads
        text (``text_dim`` > 0), refused without text. Every published model version records it, and a
        device refuses a model whose encoder is not the one it has (:mod:`vane.server.encoder_registry`).
    resume : bool, default False
        Continue from the newest checkpoint in ``out_dir``.
    spec_file, taxonomy_file : str, default ""
        JSON files of the ModelSpec and Taxonomy; empty means the synthetic defaults (simulations).
        ``taxonomy-file`` may name a built-in vocabulary: ``builtin:topics`` (the default of a
        deployment app, :mod:`vane.shared.vocabularies`), ``builtin:browsing`` or ``builtin:synthetic``.
    taxonomy_version : str, default ""
        The content hash the taxonomy must have (``Taxonomy.version``); a different one stops the run
        with a TaxonomyError naming both. Empty: not checked.
    round_timeout : float, default 600
        Seconds to wait for replies in each phase.
    evaluate_initial : bool, default True
        Evaluate the untrained model on the clients before round 1 (recorded as round 0).
    train_parts : {"all", "lstm", "ranker"}, default "all"
        What devices train each round (``ranker``: only the candidate ranker of a spec that has one).
    mix_grid_step : float, default 0.25
        Federated choice of the on-device blend: each evaluating device scores the candidates of
        ``mix_grid(step)`` (70 at 0.25) on its held-out events and sends their mean HR@1 and MRR;
        the best is published with the model version and sent to the devices. 0 turns it off.
    update_norm_ratio : float, default 10.0
        Reject an update whose delta's L2 norm exceeds this many times the round's median norm
        (:mod:`vane.server.update_bounds`); 0 turns the bound off.
    num_examples_ratio : float, default 10.0
        Cap a claimed ``num-examples`` at this many times the round's median claim; 0 turns it off.
    max_num_examples : int, default 1000000
        Cap every claimed ``num-examples`` at this value.
    """

    num_server_rounds: int = 3
    strategy: str = "fedavg"
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    min_train_nodes: int = 2
    min_evaluate_nodes: int = 2
    min_available_nodes: int = 2
    local_epochs: int = 1
    learning_rate: float = 0.0
    learning_rate_decay: float = 1.0
    proximal_mu: float = 0.01
    server_learning_rate: float = 0.01
    trim_beta: float = 0.2
    num_malicious_nodes: int = 0
    delta_float16: bool = False
    seed: int = 0
    holdout_fraction: float = 0.1
    out_dir: str = "vane-run"
    registry_dir: str = ""
    encoder_version: str = ""
    resume: bool = False
    spec_file: str = ""
    taxonomy_file: str = ""
    taxonomy_version: str = ""
    round_timeout: float = 600.0
    evaluate_initial: bool = True
    mix_grid_step: float = 0.25
    update_norm_ratio: float = 10.0
    num_examples_ratio: float = 10.0
    max_num_examples: int = 1_000_000
    train_parts: str = "all"

    def __post_init__(self) -> None:
        if self.train_parts not in TRAIN_PARTS:
            raise ConfigError(f"run_config train-parts is {self.train_parts!r}; expected one of "
                              f"{', '.join(TRAIN_PARTS)}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"run_config strategy is {self.strategy!r}; expected one of {', '.join(STRATEGIES)}")
        if self.num_server_rounds < 1:
            raise ConfigError(f"run_config num-server-rounds is {self.num_server_rounds}; expected >= 1")
        for name in ("fraction_train", "fraction_evaluate"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"run_config {name.replace('_', '-')} is {value}; expected 0 < value <= 1")
        if self.local_epochs < 1:
            raise ConfigError(f"run_config local-epochs is {self.local_epochs}; expected >= 1")
        if self.learning_rate < 0:
            raise ConfigError(f"run_config learning-rate is {self.learning_rate}; expected >= 0 (0 = spec default)")
        if not 0.0 < self.learning_rate_decay <= 1.0:
            raise ConfigError(f"run_config learning-rate-decay is {self.learning_rate_decay}; expected 0 < value <= 1")
        if self.mix_grid_step:
            try:
                mix_grid(self.mix_grid_step)
            except ValueError as exc:
                raise ConfigError(f"run_config mix-grid-step: {exc} (0 = off)") from None
        for name in ("update_norm_ratio", "num_examples_ratio"):
            value = getattr(self, name)
            if value != 0 and not value >= 1:
                raise ConfigError(f"run_config {name.replace('_', '-')} is {value}; expected 0 (off) or >= 1")
        if self.max_num_examples < 1:
            raise ConfigError(f"run_config max-num-examples is {self.max_num_examples}; expected >= 1")

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> ServerSettings:
        """Settings from kebab-case ``run_config`` keys; unknown keys are ignored (clients read some)."""
        return read_settings(cls, (RUN_CONFIG, run_config))

    def to_run_config(self) -> dict[str, Any]:
        """The settings as kebab-case run_config keys."""
        return to_config(self)


@dataclass(frozen=True)
class PrivacySettings:
    """Differential-privacy settings; the run_config key is the field name in kebab-case.

    Parameters
    ----------
    dp_mode : {"off", "server", "client"}, default "off"
        "server": the server clips each delta; "client": each device clips its own
        (:func:`vane.client.mods.delta_clipping_mod`).
    noise_multiplier : float, default 0.0
        Gaussian noise std / clipping norm; 0 clips only (ε is infinite).
    clipping_norm : float, default 1.0
        L2 bound of each client's delta (initial bound with adaptive clipping).
    adaptive_clipping : bool, default False
        Andrew et al. geometric update of the clipping norm towards a quantile.
    target_clipped_quantile : float, default 0.5
    clip_norm_lr : float, default 0.2
    dp_delta : float, default 1e-5
        δ at which ε is reported; must be below 1/population.
    target_epsilon : float, default 0.0
        Stop before a round whose ε would exceed this; 0 means no limit.
    population_size : int, default 0
        Clients that could take part; 0 means ``min-available-nodes``.
    clipped_count_stddev : float, default 0.0
        Noise on the adaptive clipped count; 0 means Flower's ``sampled/20`` (must exceed noise-multiplier/2).
    """

    dp_mode: str = "off"
    noise_multiplier: float = 0.0
    clipping_norm: float = 1.0
    adaptive_clipping: bool = False
    target_clipped_quantile: float = 0.5
    clip_norm_lr: float = 0.2
    dp_delta: float = 1e-5
    target_epsilon: float = 0.0
    population_size: int = 0
    clipped_count_stddev: float = 0.0

    @property
    def enabled(self) -> bool:
        """Whether any DP mode is on."""
        return self.dp_mode != "off"

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any], population: int | None = None) -> PrivacySettings:
        """Read and validate; ``population`` fills ``population-size`` when that is 0."""
        values = settings_values(cls, (RUN_CONFIG, run_config))
        if not values.get("population_size") and population:
            values["population_size"] = int(population)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`PrivacyConfigError` naming the key, its value and what is expected."""
        if self.dp_mode not in DP_MODES:
            raise PrivacyConfigError(f"run_config dp-mode is {self.dp_mode!r}; expected one of {', '.join(DP_MODES)}")
        if not self.clipping_norm > 0:
            raise PrivacyConfigError(f"run_config clipping-norm is {self.clipping_norm}; expected a value > 0")
        if self.noise_multiplier < 0:
            raise PrivacyConfigError(f"run_config noise-multiplier is {self.noise_multiplier}; expected >= 0")
        if self.target_epsilon < 0:
            raise PrivacyConfigError(f"run_config target-epsilon is {self.target_epsilon}; expected >= 0 (0 = none)")
        if not 0 <= self.target_clipped_quantile <= 1 or self.clip_norm_lr <= 0:
            raise PrivacyConfigError("run_config target-clipped-quantile must be in [0, 1] and clip-norm-lr > 0")
        if not self.enabled:
            return
        if self.population_size < 1:
            raise PrivacyConfigError(f"run_config population-size is {self.population_size}; expected >= 1")
        if not 0 < self.dp_delta < 1.0 / self.population_size:
            raise PrivacyConfigError(
                f"run_config dp-delta is {self.dp_delta}; expected 0 < delta < 1/population = "
                f"{1.0 / self.population_size:.3g} (a larger delta allows releasing one client's data outright)"
            )
        if self.target_epsilon > 0 and self.noise_multiplier == 0:
            raise PrivacyConfigError("run_config target-epsilon is set but noise-multiplier is 0 (ε is infinite)")


def secure_privacy_settings(run_config: Mapping[str, Any], population: int) -> PrivacySettings:
    """DP settings for a SecAgg+ run: only what a server that sees just the masked sum can do.

    SecAgg+ hides each client's delta, so the server can neither clip it (``dp-mode server``) nor
    read its clipped-or-not bit (adaptive clipping). Devices clip (``dp-mode client``) before
    masking; the server adds the noise to the unmasked mean.
    """
    privacy = PrivacySettings.from_run_config(run_config, population=population)
    if privacy.dp_mode == "server":
        raise PrivacyConfigError(
            "run_config dp-mode is 'server' with secure-aggregation; expected 'client': SecAgg+ hides each "
            "delta from the server, so only the devices can clip it"
        )
    if privacy.enabled and privacy.adaptive_clipping:
        raise PrivacyConfigError(
            "run_config adaptive-clipping is true with secure-aggregation; expected false: adaptive clipping "
            "reads each device's clipped-or-not bit, which SecAgg+ does not reveal"
        )
    return privacy


@dataclass(frozen=True)
class SecAggSettings:
    """SecAgg+ settings; the run_config key is the field name in kebab-case.

    Parameters
    ----------
    secure_aggregation : bool, default False
    secagg_num_shares : float, default 1.0
        At most 1: a fraction of the sampled nodes; above 1: a count, at least 3.
    secagg_reconstruction_threshold : float, default 0.67
        At most 1: a fraction of the shares; above 1: a count.
    secagg_clipping_range : float, default 8.0
    secagg_quantization_range : int, default 4194304
    secagg_max_weight : float, default 1000.0
    """

    secure_aggregation: bool = False
    secagg_num_shares: float = 1.0
    secagg_reconstruction_threshold: float = 0.67
    secagg_clipping_range: float = 8.0
    secagg_quantization_range: int = 4194304
    secagg_max_weight: float = 1000.0

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> SecAggSettings:
        """Read and validate the kebab-case ``run_config`` keys."""
        settings = read_settings(cls, (RUN_CONFIG, run_config))
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`PrivacyConfigError` naming the key, its value and what is expected."""
        shares, threshold = self.secagg_num_shares, self.secagg_reconstruction_threshold
        if shares <= 0 or (shares > 1 and (not float(shares).is_integer() or shares < 3)):
            raise PrivacyConfigError(
                f"run_config secagg-num-shares is {shares}; expected a fraction in (0, 1] or a count >= 3"
            )
        if threshold <= 0 or (threshold > 1 and not float(threshold).is_integer()):
            raise PrivacyConfigError(
                f"run_config secagg-reconstruction-threshold is {threshold}; expected a fraction in (0, 1] or a count"
            )
        if shares > 1 and threshold > shares:
            raise PrivacyConfigError(
                f"run_config secagg-reconstruction-threshold ({threshold}) exceeds secagg-num-shares ({shares})"
            )
        if self.secagg_clipping_range <= 0 or self.secagg_quantization_range < 2 or self.secagg_max_weight <= 0:
            raise PrivacyConfigError(
                "run_config secagg-clipping-range and secagg-max-weight must be > 0, secagg-quantization-range >= 2"
            )

    def workflow_args(self) -> dict[str, Any]:
        """Arguments of :class:`flwr.server.workflow.SecAggPlusWorkflow`."""

        def count_or_fraction(value: float) -> int | float:
            return int(value) if value > 1 else float(value)

        return {
            "num_shares": count_or_fraction(self.secagg_num_shares),
            "reconstruction_threshold": count_or_fraction(self.secagg_reconstruction_threshold),
            "clipping_range": self.secagg_clipping_range,
            "quantization_range": self.secagg_quantization_range,
            "max_weight": self.secagg_max_weight,
        }

    def quantization_bound(self, weights: Sequence[float], max_abs_delta: float = 0.0) -> float:
        """Largest per-coordinate gap between the SecAgg+ aggregate and FedAvg of the clipped deltas.

        Client ``i`` sends its clipped delta times ``q_i``, its weight capped at ``max_weight`` and
        rounded to ``1/Q`` (``Q`` = quantization_range), stochastically rounded to a grid of step
        ``2·clipping_range/Q``; the server divides the sum by ``Σ q_i``. So the grid adds at most
        ``k·step/Σ q_i`` for ``k`` clients, and the rounded weights move the weighted mean of deltas
        bounded by ``max_abs_delta`` by at most ``k·max_abs_delta/Q/Σ q_i``.
        """
        q = self.secagg_quantization_range
        ratios = [round(min(w, self.secagg_max_weight) / self.secagg_max_weight * q) / q for w in weights]
        step = 2.0 * self.secagg_clipping_range / q
        return len(ratios) * (step + max_abs_delta / q) / sum(ratios)


def model_version_of(spec: ModelSpec, taxonomy: Taxonomy) -> str:
    """The model version clients install: the architecture (spec) and vocabulary (taxonomy)."""
    from vane.shared.artifact import model_identity

    return model_identity(spec, taxonomy)


def default_taxonomy() -> Taxonomy:
    """The synthetic population's vocabulary (:data:`vane.shared.synthetic_vocab.SYNTHETIC_CATEGORIES`)."""
    return Taxonomy(list(SYNTHETIC_CATEGORIES))
