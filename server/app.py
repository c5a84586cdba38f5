"""The Flower ServerApp: federated training of the interest model.

``vane.server.app:app`` reads its settings from ``run_config`` (kebab-case keys, defaults in
:class:`~vane.server.config.ServerSettings`, since ``run_simulation`` leaves ``run_config``
empty). Each round it

1. sends the global weights (and the LiteRT model to nodes that lack it),
2. aggregates the clients' weight deltas with the chosen strategy
   (:mod:`vane.server.strategies`), rejecting bad updates,
3. collects evaluate metrics, weighted by ``num-examples``,
4. writes a checkpoint to ``out-dir`` and publishes a model version in the
   registry (:class:`~vane.server.run.FederationRun`).

``secure-aggregation`` runs the rounds under SecAgg+ and ``dp-mode`` under client-level
differential privacy (:mod:`vane.server.privacy`). ``population-stats`` first sums the devices'
category counts by federated analytics and ships the statistics with every train message
(:mod:`vane.server.analytics`). ``resume = true`` continues from the newest
checkpoint in ``out-dir``. Run by Flower itself (``flwr run``), the app raises
:class:`RunFailedError` when a round aggregated no device update, so that the run shows as failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from vane.server.analytics import ship_population
from vane.server.config import SecAggSettings, ServerSettings
from vane.server.privacy import apply_privacy, run_secure
from vane.server.run import FederationOutcome, FederationRun, RoundCallback
from vane.shared.errors import VaneError
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy


def build_server_app(
    spec: ModelSpec | None = None,
    taxonomy: Taxonomy | None = None,
    model_blob: bytes | None = None,
    overrides: Mapping[str, Any] | None = None,
    on_round: RoundCallback | None = None,
    outcome: list[FederationOutcome] | None = None,
) -> ServerApp:
    """A ServerApp; arguments preset what ``run_config`` would (the simulation runner uses them).

    Parameters
    ----------
    spec, taxonomy, model_blob : optional
        The model to train; by default built from ``spec-file``/``taxonomy-file`` or the synthetic defaults.
    overrides : mapping, optional
        run_config keys that take precedence over the context's run_config.
    on_round : callable, optional
        Called as ``on_round(round, total_rounds, round_log)`` after every round (round 0 = untrained).
    outcome : list, optional
        Receives the :class:`~vane.server.run.FederationOutcome` when the run ends.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_config = {**dict(context.run_config), **dict(overrides or {})}
        settings = ServerSettings.from_run_config(run_config)
        run = FederationRun(settings, spec, taxonomy, model_blob, on_round)
        result = run_private(run, grid, context, run_config)
        if outcome is not None:
            outcome.append(result)  # the caller (vane.simulations.federation) judges the outcome
        else:
            check_trained(result)  # under `flwr run`: a failed run must show as failed in `flwr ls`

    return app


class RunFailedError(VaneError):
    """A ServerApp run in which some round aggregated no device update."""


def check_trained(result: FederationOutcome) -> None:
    """Raise :class:`RunFailedError` when a round of ``result`` aggregated no update (every device failed).

    Flower then marks the run ``finished:failed`` (``flwr ls``), where it would otherwise report
    ``completed`` for a run in which no device trained.
    """
    empty = [r["round"] for r in result.rounds if r["round"] > 0 and not r.get("aggregated-nodes")]
    if empty:
        raise RunFailedError(f"round(s) {empty} aggregated no device update: every device failed or was rejected "
                             "(the ClientApp log names each refusal)")


def run_private(run: FederationRun, grid: Grid, context: Context, run_config: Mapping[str, Any]) -> FederationOutcome:
    """Run with SecAgg+ (``secure-aggregation``) or with the DP wrapper that ``dp-mode`` asks for, or plainly."""
    secagg = SecAggSettings.from_run_config(run_config)
    ship_population(run, grid, context, run_config, secagg)  # population-stats: federated analytics first
    if secagg.secure_aggregation:
        return run_secure(run, grid, context, secagg, run_config)
    apply_privacy(run, run_config)
    return run.run(grid)


app = build_server_app()

__all__ = ["RunFailedError", "app", "build_server_app", "check_trained", "run_private"]
