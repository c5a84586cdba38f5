"""The audit's federated runs: one plain FedAvg round, one SecAgg+ round and one SecAgg+ round with DP.

Every run records its messages with :class:`~vane.simulations.mods.MessageRecorder` (searching them for the
users' data and capturing the weight and delta vectors), in a process of its own
(:func:`vane.simulations.federation.run_isolated`). :func:`run_audit` then runs the leakage attack of
:mod:`vane.simulations.audit.attack` on what the server saw in each setting and writes the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from vane.shared.protocol import (
    ARRAYS_RECORD,
    DELTA_KEY,
    DP_DELTA_KEY,
    DP_NOISE_STD_KEY,
    EPSILON_KEY,
    LEGACY_FIT_PARAMETERS,
)
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.simulations.audit.attack import (
    attack,
    attack_aggregate,
    client_truths,
    device_noise,
    noise_threshold,
    popularity_baseline,
)
from vane.simulations.audit.messages import Needles, check_messages, summarise_messages
from vane.simulations.audit.report import fmt, write_report
from vane.simulations.federation import run_isolated
from vane.simulations.mods import DropoutAfterKeySharing, MessageRecorder

if TYPE_CHECKING:
    from vane.simulations.synthetic import SyntheticPopulation


@dataclass
class AuditConfig:
    """Settings of the message audit and the leakage attack.

    Parameters
    ----------
    users : int, default 12
        Synthetic population.
    seed : int, default 3
    local_epochs : int, default 2
    learning_rate : float, default 0.02
    item_buckets, token_buckets : int, default 512, 256
        A small spec keeps the captured vectors small.
    clipping_norm : float, default 0.5
        Clipping norm of the DP settings the attack is run against.
    device_noise : tuple of float, default (0.5, 1.0)
        Noise multipliers of the device-noise settings.
    secagg_dropout : int, optional
        A partition that drops out of SecAgg+ after sharing its keys.
    secagg_noise : float or None, default 0.5
        Noise multiplier of the SecAgg+ round with device clipping and server noise; None skips that round.
    num_cpus : int, default 2
    extra : dict
        Further run_config keys of every run.
    """

    users: int = 12
    seed: int = 3
    local_epochs: int = 2
    learning_rate: float = 0.02
    item_buckets: int = 512
    token_buckets: int = 256
    clipping_norm: float = 0.5
    device_noise: tuple[float, ...] = (0.5, 1.0)
    secagg_dropout: int | None = None
    secagg_noise: float | None = 0.5
    num_cpus: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


def synthetic_setup(
    users: int, seed: int, **spec_fields: int
) -> tuple[SyntheticPopulation, Taxonomy, ModelSpec, bytes]:
    """A synthetic population, its taxonomy, a spec for it (``spec_fields`` override defaults) and its export."""
    from vane.server.model import export_training_model
    from vane.simulations.synthetic import SyntheticPopulation

    pop = SyntheticPopulation(users, seed=seed)
    taxonomy = Taxonomy(pop.categories)
    spec = ModelSpec(num_categories=len(taxonomy), **spec_fields)
    return pop, taxonomy, spec, export_training_model(spec)


def _load_captures(capture_dir: Path, n: int, pattern: str) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for pid in range(n):
        files = sorted(capture_dir.glob(f"p{pid:05d}-{pattern}.npy"))
        out.append(np.load(files[-1]) if files else None)
    return out



def run_audit(out_dir: str | Path, config: AuditConfig | None = None,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Message audit and leakage attack over a plain FedAvg round, a SecAgg+ round and (with
    ``secagg_noise``) a SecAgg+ round with device clipping and server noise; writes audit.json/.md.

    Parameters
    ----------
    out_dir : path
        ``audit.json``, ``audit.md`` and one folder per run (``messages.jsonl``, ``captures/``).
    config : AuditConfig, optional
    progress : callable, optional
        Receives one line per run.

    Returns
    -------
    dict
        The report; ``passed`` is False when any message carried user data.

    Raises
    ------
    PrivacyLeakError
        When a message carried user data (after the report is written).
    """
    cfg = config or AuditConfig()
    say = progress or (lambda *_: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pop, taxonomy, spec, blob = synthetic_setup(cfg.users, cfg.seed, item_buckets=cfg.item_buckets,
                                                token_buckets=cfg.token_buckets)
    needles = Needles.of(pop.users)
    order = sorted(pop.users)
    truths = client_truths(pop.users, order, spec, taxonomy)
    common = {"rounds": 1, "fraction": 1.0, "local_epochs": cfg.local_epochs, "learning_rate": cfg.learning_rate,
              "seed": cfg.seed, "num_cpus": cfg.num_cpus, "progress": False, "model_blob": blob}
    runs: dict[str, Any] = {}
    secure = {"secure-aggregation": True, "secagg-reconstruction-threshold": 0.5, **cfg.extra}
    dropout = [DropoutAfterKeySharing(cfg.secagg_dropout)] if cfg.secagg_dropout is not None else []
    plan: list[tuple[str, dict[str, Any], list[Any]]] = [("plain", dict(cfg.extra), []), ("secagg", secure, dropout)]
    if cfg.secagg_noise is not None:
        plan.append(("secagg-dp", {**secure, "dp-mode": "client", "noise-multiplier": cfg.secagg_noise,
                                   "clipping-norm": cfg.clipping_norm}, dropout))
    for name, server_config, extra_mods in plan:
        say(f"running one {name} round over {cfg.users} users")
        run_out = out / name
        capture = run_out / "captures"
        capture.mkdir(parents=True, exist_ok=True)
        for old in capture.glob("*.npy"):
            old.unlink()
        log = run_out / "messages.jsonl"
        log.unlink(missing_ok=True)
        mods = [MessageRecorder(log, needles, capture), *extra_mods]
        result = run_isolated(users=pop.users, taxonomy=taxonomy, spec=spec, out_dir=run_out, client_mods=mods,
                              server_config=server_config, **common)
        runs[name] = {"result": result, "messages": summarise_messages(log), "capture": capture, "log": log}
    # plain FedAvg: every client's delta, as the server received it
    deltas = _load_captures(runs["plain"]["capture"], len(order), f"out-{ARRAYS_RECORD}-{DELTA_KEY}")
    have = [i for i, d in enumerate(deltas) if d is not None]
    d_plain = [d for d in deltas if d is not None]
    t_plain = [truths[i] for i in have]
    leakage: list[dict[str, Any]] = []

    def row(setting: str, view: str, items: dict[str, float], cats: dict[str, float]) -> None:
        leakage.append({"setting": setting, "server view": view,
                        "item precision": items["precision"], "item recall": items["recall"],
                        "category precision": cats["precision"], "category recall": cats["recall"]})

    row("plain FedAvg", "each client's delta",
        attack(d_plain, t_plain, spec, "emb/item", 1e-9), attack(d_plain, t_plain, spec, "emb/category", 1e-9))
    clipped = device_noise(d_plain, cfg.clipping_norm, 0.0)
    row(f"central DP (C={cfg.clipping_norm}, any z)", "each client's clipped delta (noise is added after)",
        attack(clipped, t_plain, spec, "emb/item", 1e-9), attack(clipped, t_plain, spec, "emb/category", 1e-9))
    for z in cfg.device_noise:
        noisy = device_noise(d_plain, cfg.clipping_norm, z, seed=cfg.seed)
        sigma = z * cfg.clipping_norm
        row(f"device noise z={z} (C={cfg.clipping_norm})", "each client's noised delta",
            attack(noisy, t_plain, spec, "emb/item", noise_threshold(sigma, spec.item_dim)),
            attack(noisy, t_plain, spec, "emb/category", noise_threshold(sigma, spec.category_dim)))
    # SecAgg+: the aggregate only (new global - old global)
    weights_in = _load_captures(runs["secagg"]["capture"], len(order),
                                f"in-{LEGACY_FIT_PARAMETERS.replace('.', '_')}-0")
    initial = next(w for w in weights_in if w is not None)
    sec_result = runs["secagg"]["result"]
    aggregate = sec_result.final_weights.flat - initial
    sec_round = sec_result.round(1)
    survivors = len(sec_round["aggregated-nodes"])
    t_all = truths
    row(f"SecAgg+ ({survivors} of {len(order)} clients)", "aggregate only; top-k rows per client",
        attack_aggregate(aggregate, t_all, spec, "emb/item"), attack_aggregate(aggregate, t_all, spec, "emb/category"))
    secure_dp: dict[str, Any] = {}
    if "secagg-dp" in runs:
        dp_result = runs["secagg-dp"]["result"]
        dp_round = dp_result.round(1)
        m = len(dp_round["aggregated-nodes"])
        noised = dp_result.final_weights.flat - initial
        metrics = dp_round.get("train", {})
        secure_dp = {"aggregated": m, "failed": dp_round["failed"], "noise-std": metrics.get(DP_NOISE_STD_KEY),
                     "epsilon": metrics.get(EPSILON_KEY), "delta": metrics.get(DP_DELTA_KEY)}
        row(f"SecAgg+ with DP z={cfg.secagg_noise} (C={cfg.clipping_norm}, {m} of {len(order)} clients, "
            f"ε={fmt(secure_dp['epsilon'])})", "noised aggregate only; top-k rows per client",
            attack_aggregate(noised, t_all, spec, "emb/item"), attack_aggregate(noised, t_all, spec, "emb/category"))
    row("popularity guess (baseline)", "nothing; top-k popular rows",
        popularity_baseline(t_all, "emb/item"), popularity_baseline(t_all, "emb/category"))
    report = {
        "config": {"users": cfg.users, "seed": cfg.seed, "item-buckets": spec.item_buckets,
                   "categories": len(taxonomy), "clipping-norm": cfg.clipping_norm,
                   "mean items per client": float(np.mean([len(t.items) for t in truths])),
                   "mean categories per client": float(np.mean([len(t.categories) for t in truths]))},
        "messages": {name: {k: v for k, v in r["messages"].items()} for name, r in runs.items()},
        "leakage": leakage,
        "secagg": {"aggregated": survivors, "failed": sec_round["failed"]},
        "secagg-dp": secure_dp,
        "passed": all(r["messages"]["passed"] for r in runs.values()),
    }
    write_report(out, report)
    if not report["passed"]:
        for run in runs.values():
            check_messages(run["log"])
    return report


