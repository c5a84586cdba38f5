"""Utility vs privacy: how good the federated model stays at each noise level, next to the ε it reaches.

Each noise multiplier gets a fresh federated run (server-side DP, a fraction of the users sampled each
round) in a process of its own (:func:`vane.simulations.federation.run_isolated`); ε is reported with
that sampling and also without amplification by sampling.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vane.shared.protocol import DP_DELTA_KEY, EPSILON_KEY, EPSILON_NO_AMPLIFICATION_KEY, NDCG10_KEY
from vane.simulations.audit.report import markdown_table
from vane.simulations.audit.runs import synthetic_setup
from vane.simulations.federation import FederationResult, run_isolated


@dataclass
class UtilityConfig:
    """Settings of the utility-vs-privacy runs (server-side DP, one fresh process per noise level).

    Parameters
    ----------
    users : int, default 1000
        Synthetic population; ε assumes ``dp-delta`` < 1/users.
    noise : tuple of float, default (0.0, 0.5, 1.0, 2.0)
        Noise multipliers; 0 clips without noise (ε infinite).
    rounds : int, default 8
    fraction : float, default 0.1
        Users trained per round, drawn without replacement (100 of 1,000); ε is accounted for that sampling.
    fraction_evaluate : float, default 0.2
        Users evaluated per round (round 0 is the untrained model).
    clipping_norm : float, default 4.0
        Near the median delta norm of the default spec after 2 local epochs at learning rate 0.02
        (about 4.6 in round 1), so clipping barely shrinks the clean signal.
    dp_delta : float, default 1e-4
    local_epochs : int, default 2
    learning_rate : float, default 0.02
    seed : int, default 3
    num_cpus : int, default 2
    keep_devices : bool, default False
        Keep each run's 1.6 MB-per-user device stores.
    """

    users: int = 1000
    noise: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    rounds: int = 8
    fraction: float = 0.1
    fraction_evaluate: float = 0.2
    clipping_norm: float = 4.0
    dp_delta: float = 1e-4
    local_epochs: int = 2
    learning_rate: float = 0.02
    seed: int = 3
    num_cpus: int = 2
    keep_devices: bool = False


def run_utility(out_dir: str | Path, config: UtilityConfig | None = None,
                progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """HR@5 and NDCG@10 of the federated model per noise multiplier, next to the ε it reached.

    ε is reported twice at ``dp-delta``: with the sampling used (``fraction`` of the users without
    replacement, replace-one adjacency) and the bound without amplification by sampling (see
    :mod:`vane.server.privacy`). After each level, ``OUT/utility.json`` and ``OUT/utility.md`` hold
    the rows so far.
    """
    cfg = config or UtilityConfig()
    say = progress or (lambda *_: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pop, taxonomy, spec, blob = synthetic_setup(cfg.users, cfg.seed)
    rows: list[dict[str, Any]] = []
    for z in cfg.noise:
        say(f"utility run: {cfg.users} users, {cfg.rounds} rounds of {cfg.fraction:g} of them, noise multiplier {z}")
        run_dir = out / f"noise-{z}"
        started = time.perf_counter()
        result = run_isolated(
            users=pop.users, taxonomy=taxonomy, spec=spec, rounds=cfg.rounds, fraction=cfg.fraction,
            fraction_evaluate=cfg.fraction_evaluate, out_dir=run_dir, local_epochs=cfg.local_epochs,
            learning_rate=cfg.learning_rate, seed=cfg.seed, num_cpus=cfg.num_cpus, progress=False, model_blob=blob,
            server_config={"dp-mode": "server", "noise-multiplier": z, "clipping-norm": cfg.clipping_norm,
                           DP_DELTA_KEY: cfg.dp_delta},
        )
        rows.append(utility_row(z, cfg, result, time.perf_counter() - started))
        if not cfg.keep_devices:
            shutil.rmtree(run_dir / "devices", ignore_errors=True)
        write_utility(out, cfg, rows)
        say(markdown_table(rows[-1:]))
    return rows


def utility_row(noise: float, cfg: UtilityConfig, result: FederationResult, seconds: float) -> dict[str, Any]:
    """One line of the utility table from a :class:`~vane.simulations.federation.FederationResult`."""
    from vane.server.privacy import sampled_clients

    last = result.rounds[-1]
    untrained = result.evaluate(0)
    return {
        "noise multiplier": noise, "rounds": last["round"], "fraction": cfg.fraction,
        "users per round": sampled_clients(cfg.users, cfg.fraction, 1),
        "ε (sampling used)": last["train"].get(EPSILON_KEY),
        "ε (no amplification)": last["train"].get(EPSILON_NO_AMPLIFICATION_KEY),
        "δ": last["train"].get(DP_DELTA_KEY, cfg.dp_delta),
        "hr@5": last["evaluate"].get("hr@5"), "ndcg@10": last["evaluate"].get(NDCG10_KEY),
        "untrained hr@5": untrained.get("hr@5"), "untrained ndcg@10": untrained.get(NDCG10_KEY),
        "wall s": round(seconds),
    }


def write_utility(out: Path, cfg: UtilityConfig, rows: list[dict[str, Any]]) -> None:
    """``utility.json`` and ``utility.md`` in ``out``: the settings and the rows so far."""
    (out / "utility.json").write_text(json.dumps({"config": asdict(cfg), "rows": rows}, indent=1, default=str),
                                      encoding="utf-8")
    head = (f"{cfg.users} synthetic users; each round {cfg.fraction:g} of them train (without replacement) and "
            f"{cfg.fraction_evaluate:g} are evaluated; server-side DP, clipping norm {cfg.clipping_norm}, "
            f"{cfg.local_epochs} local epochs at learning rate {cfg.learning_rate}.")
    (out / "utility.md").write_text(f"# Utility vs privacy\n\n{head}\n\n{markdown_table(rows)}\n", encoding="utf-8")


