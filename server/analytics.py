"""Population knowledge by federated analytics: the devices' category counts summed with Flower, never collected.

Before training (``population-stats = true``), one round on Flower's legacy workflow asks every device
for its popularity and transition counts over the model's taxonomy (:mod:`vane.client.population`, the
layout of :mod:`vane.shared.population_artifact`) and sums them:

- **SecAgg+ on** (``secure-aggregation``): the round runs under :class:`flwr.server.workflow.SecAggPlusWorkflow`
  (shares and threshold from :class:`~vane.server.config.SecAggSettings`), so the server only ever sees
  the masked sum. The quantisation is set for counts rather than deltas: each device caps every entry at
  ``population-entry-cap`` ``B`` and subtracts ``B/2``, so its vector lies in ``[-B/2, B/2]`` =
  SecAgg+'s ``clipping_range``; every device weighs 1 (``max_weight`` 1, so the SecAgg+ ratio is exactly 1
  and nothing is rescaled on the device); ``quantization_range`` ``Q`` is the largest power of two with
  ``n·Q < 2^32`` (the modulus; at most ``2^30``), so the masked sum of ``n`` devices cannot wrap. The
  unmasked aggregate is the mean of the centred vectors; the server adds ``B/2`` and multiplies by ``n``.
  Stochastic rounding moves each device's entry by less than one grid step ``B/Q`` (unbiased), so the
  sum is exact to ``n·B/Q`` per entry (stated in the artifact as ``tolerance``), and exact for entries
  on the grid: whole counts, and transitions whose weight is a dyadic fraction.
- **SecAgg+ off**: the same round on the default workflow; the server sees each device's vector
  (float32) and sums them. Use it only where that is acceptable.

Optional DP (``population-noise-multiplier`` ``z`` > 0, with ``population-clip-norm`` ``C`` > 0): each
device also clips its vector to L2 ``C`` (less SecAgg+'s rounding slack ``√d·B/Q``), and the server adds
Gaussian noise of std ``z·C`` to every entry of the sum (the operating system's entropy, no seed). Every
device answers, so the release is one Gaussian mechanism under add-or-remove-one with σ/Δ = ``z``; its ε
at the run's ``dp-delta`` (:func:`vane.server.privacy.accounting.population_epsilon`) is written into the
artifact and into every model version the run publishes (``population-dp-epsilon``), beside the training ε.

The result is a :class:`~vane.shared.population_artifact.PopulationArtifact`, published beside the model
(``REGISTRY/population/<version>.vpop`` and ``REGISTRY/population.json``) and sent to the devices with
every train message (``population-artifact``), which keep it sealed in their store.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.common import FitIns, FitRes, Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid
from vane.server.config import SecAggSettings
from vane.server.privacy.accounting import population_epsilon
from vane.server.run import FederationRun
from vane.shared import protocol as p
from vane.shared.errors import PrivacyConfigError, VaneError
from vane.shared.population import PopulationStats
from vane.shared.population_artifact import PopulationArtifact, population_version, vector_size
from vane.shared.taxonomy import Taxonomy

logger = logging.getLogger("vane.server")

#: SecAgg+'s modulus (Flower's default and largest): the masked sum of quantised entries is taken mod this.
MODULUS = 1 << 32
POPULATION_DIR = "population"
POPULATION_INDEX = "population.json"


class PopulationRoundError(VaneError):
    """The federated-analytics round produced no sum (every device failed, or too few answered)."""


@dataclass(frozen=True)
class PopulationSettings:
    """run_config keys of the population-statistics round (the field names in kebab-case).

    Parameters
    ----------
    population_stats : bool, default False
        Run the round before training and ship the statistics with the model.
    population_entry_cap : float, default 16384
        Each device caps every count at this (the SecAgg+ range is ``[-cap/2, cap/2]``).
    population_clip_norm : float, default 0
        Each device's L2 clip ``C`` (0: none; required with noise).
    population_noise_multiplier : float, default 0
        Gaussian noise of std ``z·C`` on the sum (0: no DP).
    dp_delta : float, default 1e-5
        δ at which ε is reported (the run's ``dp-delta``).
    """

    population_stats: bool = False
    population_entry_cap: float = 16384.0
    population_clip_norm: float = 0.0
    population_noise_multiplier: float = 0.0
    dp_delta: float = 1e-5

    def __post_init__(self) -> None:
        if self.population_entry_cap <= 0 or self.population_clip_norm < 0 or self.population_noise_multiplier < 0:
            raise PrivacyConfigError(
                f"population-entry-cap is {self.population_entry_cap}, population-clip-norm "
                f"{self.population_clip_norm}, population-noise-multiplier {self.population_noise_multiplier}; "
                "expected a cap > 0, a clip norm >= 0 and a noise multiplier >= 0")
        if self.population_noise_multiplier > 0 and self.population_clip_norm <= 0:
            raise PrivacyConfigError(
                f"population-noise-multiplier is {self.population_noise_multiplier} but population-clip-norm is "
                f"{self.population_clip_norm}; DP noise needs a positive clip norm (its sensitivity)")
        if not 0 < self.dp_delta < 1:
            raise PrivacyConfigError(f"dp-delta is {self.dp_delta}; expected 0 < value < 1")

    @classmethod
    def from_run_config(cls, run_config: Any) -> PopulationSettings:
        """Read and validate the kebab-case ``run_config`` keys."""
        return p.read_settings(cls, (p.RUN_CONFIG, run_config))


@dataclass(frozen=True)
class Quantisation:
    """How the counts of ``devices`` devices map onto SecAgg+'s integer grid."""

    devices: int
    entry_cap: float

    @property
    def clipping_range(self) -> float:
        return self.entry_cap / 2

    @property
    def quantization_range(self) -> int:
        """The largest power of two ``Q`` with ``devices·Q < 2^32`` (at most ``2^30``)."""
        return 1 << min(30, ((MODULUS - 1) // max(self.devices, 1)).bit_length() - 1)

    @property
    def step(self) -> float:
        """One grid step: ``cap / Q``."""
        return self.entry_cap / self.quantization_range

    def slack(self, size: int) -> float:
        """How far rounding can move one device's vector of ``size`` entries in L2."""
        return math.sqrt(size) * self.step

    def workflow(self, secagg: SecAggSettings, timeout: float | None) -> SecAggPlusWorkflow:
        args = {**secagg.workflow_args(), "max_weight": 1.0, "clipping_range": self.clipping_range,
                "quantization_range": self.quantization_range}
        return SecAggPlusWorkflow(**args, modulus_range=MODULUS, timeout=timeout)


class PopulationSum(LegacyFedAvg):
    """A legacy strategy whose one fit round asks every device for its counts and keeps their sum."""

    def __init__(self, config: dict[str, Scalar], devices: int, size: int, center: float, secure: bool,
                 step: float = 0.0, max_devices: int = 0) -> None:
        super().__init__(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=devices,
                         min_evaluate_clients=0, min_available_clients=devices,
                         initial_parameters=ndarrays_to_parameters([np.zeros(0, dtype=np.float32)]))
        self.config, self.size, self.center, self.secure, self.step = config, size, center, secure, step
        self.max_devices = max_devices or devices
        self.total: np.ndarray | None = None
        self.devices = 0
        self.failures: list[str] = []

    def num_fit_clients(self, num_available_clients: int) -> tuple[int, int]:
        """Every available device (at least ``devices``: waits for them), up to ``max_devices`` (the SecAgg+ grid's)."""
        return max(min(num_available_clients, self.max_devices), self.min_fit_clients), self.min_fit_clients

    def configure_fit(self, server_round: int, parameters: Parameters,
                      client_manager: ClientManager) -> list[tuple[ClientProxy, FitIns]]:
        pairs = super().configure_fit(server_round, parameters, client_manager)
        return [(proxy, FitIns(ins.parameters, dict(self.config))) for proxy, ins in pairs]

    def _vector(self, res: FitRes) -> np.ndarray:
        arrays = parameters_to_ndarrays(res.parameters)
        vec = np.asarray(arrays[0], dtype=np.float64).ravel() if len(arrays) == 1 else np.zeros(0)
        if vec.size != self.size or not np.all(np.isfinite(vec)):
            raise ValueError(f"a reply of {vec.size} entries (finite: {bool(np.all(np.isfinite(vec)))}); "
                             f"expected {self.size} finite counts")
        return vec

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list[Any]) -> tuple[Parameters | None, dict[str, Scalar]]:
        self.failures = [str(f)[:300] for f in failures]
        if not results:
            return None, {}
        if self.secure:  # every result carries the unmasked mean of the centred vectors
            self.devices = len(results)
            total = (self._vector(results[0][1]) + self.center) * self.devices
            # The true sum of the quantised vectors lies on the grid; snapping undoes the mean's float error.
            self.total = np.round(total / self.step) * self.step if self.step else total
            return None, {}
        total = np.zeros(self.size, dtype=np.float64)
        for proxy, res in results:
            try:
                total += self._vector(res)
            except ValueError as exc:
                self.failures.append(f"node {proxy.node_id}: {exc}")
                continue
            self.devices += 1
        self.total = total
        return None, {}


@dataclass
class PopulationOutcome:
    """What the round produced: the artifact, and how it was made."""

    artifact: PopulationArtifact
    seconds: float
    failures: list[str] = field(default_factory=list)

    def stats(self, taxonomy: Taxonomy) -> PopulationStats:
        return self.artifact.stats(taxonomy)

    @property
    def epsilon(self) -> float:
        """ε of the statistics (0 without DP)."""
        return float(self.artifact.dp.get("epsilon", 0.0))


def population_config(taxonomy: Taxonomy, settings: PopulationSettings, quant: Quantisation | None,
                      round_number: int) -> dict[str, Scalar]:
    """The config of the analytics message: the taxonomy and the clip rule (see :mod:`vane.client.population`)."""
    clip = settings.population_clip_norm
    if clip > 0 and quant is not None:
        slack = quant.slack(vector_size(taxonomy))
        if slack >= clip:
            raise PrivacyConfigError(f"population-clip-norm {clip} is within SecAgg+'s rounding slack {slack:.3g}; "
                                     "expected a larger clip norm or a smaller population-entry-cap")
        clip -= slack
    return {
        p.POPULATION_ROUND_KEY: round_number,
        p.TAXONOMY_KEY: json.dumps(taxonomy.to_dict()),
        p.POPULATION_ENTRY_CAP_KEY: settings.population_entry_cap,
        p.POPULATION_CLIP_NORM_KEY: clip,
        p.POPULATION_CENTER_KEY: quant.clipping_range if quant is not None else 0.0,
    }


def run_population_round(grid: Grid, context: Context, taxonomy: Taxonomy, settings: PopulationSettings,
                         secagg: SecAggSettings | None, devices: int, round_number: int = 0,
                         timeout: float | None = None) -> PopulationOutcome:
    """Sum every device's counts in one Flower round (under SecAgg+ when ``secagg`` asks for it).

    Parameters
    ----------
    devices : int
        Devices to wait for (at least 2 under SecAgg+); every device connected when the round starts is
        asked, and the SecAgg+ grid is sized for that number.
    round_number : int
        The training round the statistics precede (their version label).

    Raises
    ------
    PopulationRoundError
        When no device's counts were summed.
    """
    started = time.perf_counter()
    secure = secagg is not None and secagg.secure_aggregation
    if secure and devices < 2:
        raise PrivacyConfigError(f"the population round under SecAgg+ waits for {devices} device(s); SecAgg+ needs "
                                 "at least 2 (min-available-nodes)")
    asked = max(devices, len(list(grid.get_node_ids())))  # every device connected now (more are not asked)
    quant = Quantisation(asked, settings.population_entry_cap) if secure else None
    size = vector_size(taxonomy)
    config = population_config(taxonomy, settings, quant, round_number)
    strategy = PopulationSum(config, devices, size, float(config[p.POPULATION_CENTER_KEY]), secure,
                             quant.step if quant is not None else 0.0, asked)
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=1, round_timeout=timeout), strategy=strategy)
    fit = quant.workflow(secagg, timeout) if quant is not None and secagg is not None else None
    DefaultWorkflow(fit_workflow=fit)(grid, legacy)
    if strategy.total is None or strategy.devices == 0:
        raise PopulationRoundError(f"the population round summed no device's counts; failures: "
                                   f"{strategy.failures[:3]}")
    total = strategy.total
    dp: dict[str, float] = {}
    z, clip = settings.population_noise_multiplier, settings.population_clip_norm
    if z > 0:
        std = z * clip
        total = total + np.random.default_rng().normal(0.0, std, size=total.shape)
        dp = {"noise-multiplier": z, "noise-std": std, "delta": settings.dp_delta,
              "epsilon": population_epsilon(z, strategy.devices, settings.dp_delta)}
    if quant is not None:
        tolerance = strategy.devices * quant.step
    else:
        tolerance = float(np.max(np.abs(strategy.total), initial=0.0)) * 2.0 ** -23  # float32 replies
    artifact = PopulationArtifact(
        total, taxonomy.version, len(taxonomy), strategy.devices, population_version(round_number, taxonomy),
        secure, {"entry-cap": settings.population_entry_cap, "l2-norm": clip}, dp, tolerance)
    seconds = time.perf_counter() - started
    logger.info("population statistics %s: %d devices, SecAgg+ %s, %.2fs%s", artifact.version, strategy.devices,
                secure, seconds, f", ε = {dp['epsilon']:.3f}" if dp else "")
    return PopulationOutcome(artifact, seconds, strategy.failures)


def ship_population(run: FederationRun, grid: Grid, context: Context, run_config: Any,
                    secagg: SecAggSettings | None) -> PopulationOutcome | None:
    """With ``population-stats``: run the round before ``run``'s training, publish the artifact beside the
    model (``REGISTRY/population/``) and put it into every train message; None when it is off."""
    settings = PopulationSettings.from_run_config(run_config)
    if not settings.population_stats or run.remaining_rounds <= 0:
        return None
    outcome = run_population_round(grid, context, run.bundle.taxonomy, settings, secagg,
                                   run.settings.min_available_nodes, run.start_round, run.settings.round_timeout)
    publish_population(run.registry.directory, outcome.artifact)
    run.extra_train_config[p.POPULATION_ARTIFACT_KEY] = outcome.artifact.to_bytes()
    run.population_metrics.update(population_metrics(outcome))
    return outcome


def publish_population(directory: str | Path, artifact: PopulationArtifact) -> Path:
    """Write ``artifact`` under ``DIR/population/<version>.vpop`` and list it in ``DIR/population.json``."""
    root = Path(directory)
    folder = root / POPULATION_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = artifact.save(folder / f"{artifact.version}.vpop")
    index = root / POPULATION_INDEX
    entries = json.loads(index.read_text(encoding="utf-8")) if index.exists() else []
    manifest = {k: v for k, v in artifact.manifest().items() if not k.endswith("sha256")}
    entries = [e for e in entries if e.get("version") != artifact.version] + [{**manifest, "path": str(path.resolve())}]
    tmp = index.with_name(POPULATION_INDEX + ".tmp")
    tmp.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    tmp.replace(index)
    return path


def population_metrics(outcome: PopulationOutcome) -> dict[str, float]:
    """Numbers a published model version carries about the statistics shipped with it."""
    metrics = {"population-devices": float(outcome.artifact.devices), "population-seconds": outcome.seconds}
    if outcome.artifact.dp:
        metrics["population-dp-epsilon"] = outcome.epsilon
    return metrics


__all__ = ["PopulationOutcome", "PopulationRoundError", "PopulationSettings", "PopulationSum", "Quantisation",
           "population_config", "population_metrics", "publish_population", "run_population_round",
           "ship_population"]
