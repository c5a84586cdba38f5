"""``vane sim audit-privacy``: what crosses the wire, and what a curious server can learn from it.

Three parts, written to ``OUT/audit.json`` and ``OUT/audit.md``:

**Message audit.** :class:`MessageAudit`, a ClientApp mod placed outside every
other mod, records each message a device receives and each reply it sends
(array names, shapes, dtypes; metric names and values; config keys and value
types). It searches every key, string, bytes value and the raw bytes of every
array for the users' own strings: item ids, titles, category names and
timestamps. Category names are the published vocabulary (the server sends the
taxonomy), so they count as a leak only in replies. Any finding fails the
audit (:class:`PrivacyLeakError`). The client side sees both directions, so
the server side needs no separate capture.

**Item-set leakage attack.** An honest-but-curious server reads the rows of
the ``emb/item`` part of an update that changed and guesses that the client
touched those hashed item buckets (likewise ``emb/category`` rows for the
categories a client had). Settings:

- *plain FedAvg*: the server sees each client's delta;
- *central DP* (``dp-mode`` server/client): the server still sees each
  clipped, un-noised delta (the noise protects the *released* model), so the
  per-client view equals plain FedAvg's; reported as such;
- *device noise z*: each device adds Gaussian noise ``z·C`` to its clipped
  delta before sending (local DP, Flower's ``LocalDpMod`` idea); the attacker
  keeps rows whose norm exceeds what noise alone would give;
- *SecAgg+*: the server sees only the aggregate of a real SecAgg+ round; it
  guesses each client's set as the ``k`` rows of the aggregate with the
  largest change (``k`` = the true set size, an oracle that favours the
  attacker). The baseline guesses the ``k`` most popular buckets of the
  population.

**Utility vs privacy** (:func:`run_utility`): HR@5 and NDCG@10 of the
federated model at several noise multipliers, next to the ε each reaches,
with a fraction of the users sampled each round (ε accounted for that
sampling, and the bound without amplification beside it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from vane.shared.errors import VaneError
from vane.shared.events import Event
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import layout_slices

logger = logging.getLogger("vane.simulations")

_ISO_RE = re.compile(rb"(19|20)\d\d-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d")


class PrivacyLeakError(VaneError):
    """A message between server and device carried the users' own data."""


# --- what to look for ---------------------------------------------------------
@dataclass(frozen=True)
class Needles:
    """The users' strings that must never cross the wire."""

    private: frozenset[str]  # item ids, titles: never, in either direction
    vocabulary: frozenset[str]  # category names: only the server may send them
    time_range: tuple[float, float]  # epoch seconds of the users' events

    @classmethod
    def of(cls, users: Mapping[str, Sequence[Event]]) -> Needles:
        private: set[str] = set()
        vocabulary: set[str] = set()
        times: list[float] = []
        for events in users.values():
            for ev in events:
                private.add(ev.item_id)
                if ev.title:
                    private.add(ev.title)
                vocabulary.update(ev.categories)
                times.append(ev.timestamp.timestamp())
        return cls(frozenset(private), frozenset(vocabulary), (min(times), max(times)))

    def search_text(self, text: str, uplink: bool) -> list[str]:
        found = [n for n in self.private if n in text] if len(text) >= 3 else []
        if uplink:
            found += [n for n in self.vocabulary if n in text]
        if _ISO_RE.search(text.encode("utf-8", "replace")):
            found.append("<ISO timestamp>")
        return found

    def search_bytes(self, data: bytes, uplink: bool) -> list[str]:
        """Needles of 4+ bytes anywhere in ``data`` (4-byte prefixes matched with numpy, then verified)."""
        found: list[str] = []
        if _ISO_RE.search(data):
            found.append("<ISO timestamp>")
        table = _prefix_table(self.private | self.vocabulary if uplink else self.private)
        if len(data) < 4 or not table:
            return found
        arr = np.frombuffer(data, dtype=np.uint8).astype(np.uint32)
        n = len(arr) - 3
        windows = arr[:n] | (arr[1 : n + 1] << 8) | (arr[2 : n + 2] << 16) | (arr[3 : n + 3] << 24)
        keys = np.fromiter(table.keys(), dtype=np.uint32, count=len(table))
        for i in np.flatnonzero(np.isin(windows, keys)).tolist():
            found += [needle.decode("utf-8") for needle in table[int(windows[i])] if data.startswith(needle, i)]
        return found

    def is_timestamp(self, value: float) -> bool:
        lo, hi = self.time_range
        return lo - 86400 <= value <= hi + 86400


_TABLES: dict[int, dict[int, list[bytes]]] = {}


def _prefix_table(needles: frozenset[str]) -> dict[int, list[bytes]]:
    key = hash(needles)
    if key not in _TABLES:
        table: dict[int, list[bytes]] = {}
        for needle in needles:
            raw = needle.encode("utf-8")
            if len(raw) >= 4:
                table.setdefault(int.from_bytes(raw[:4], "little"), []).append(raw)
        _TABLES[key] = table
    return _TABLES[key]


# --- message audit -------------------------------------------------------------
class MessageAudit:
    """ClientApp mod: describe and search every message in and out; JSON lines to ``path``.

    Parameters
    ----------
    path : path
        JSONL file, one line per message.
    needles : Needles, optional
        What to search for; without it messages are only described.
    capture_dir : path, optional
        Save each train message's arrays (incoming weights, outgoing deltas) as ``.npy``
        files there, for the leakage attack.
    """

    def __init__(self, path: str | Path, needles: Needles | None = None, capture_dir: str | Path | None = None):
        self.path = str(path)
        self.needles = needles
        self.capture_dir = str(capture_dir) if capture_dir else None
        self._seen_blobs: dict[str, list[str]] = {}

    def __call__(self, msg: Any, context: Any, call_next: Any) -> Any:
        pid = int(context.node_config.get("partition-id", -1))
        kind = str(msg.metadata.message_type)
        stage = _secagg_stage(msg.content)
        incoming = self._describe(msg.content, uplink=False)
        self._capture(msg.content, pid, "in", stage)
        reply = call_next(msg, context)
        outgoing = self._describe(reply.content, uplink=True) if reply.has_content() else {"error": True}
        self._capture(reply.content if reply.has_content() else None, pid, "out", stage)
        with open(self.path, "a", encoding="utf-8") as fh:
            for direction, entry in (("server->client", incoming), ("client->server", outgoing)):
                fh.write(json.dumps({"direction": direction, "type": kind, "stage": stage, "partition": pid,
                                     **entry}) + "\n")
        return reply

    def _describe(self, content: Any, uplink: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"arrays": {}, "metrics": {}, "configs": {}, "findings": []}
        findings: list[str] = entry["findings"]
        for name, rec in content.array_records.items():
            entry["arrays"][name] = {k: {"dtype": a.dtype, "shape": list(a.shape)} for k, a in rec.items()}
            findings += self._text(name, uplink)
            for key, arr in rec.items():
                findings += self._text(key, uplink) + self._bytes(bytes(arr.data), uplink)
        for name, rec in content.metric_records.items():
            entry["metrics"][name] = {k: v for k, v in rec.items()}
            findings += self._text(name, uplink)
            for key, value in rec.items():
                findings += self._text(key, uplink)
                values = value if isinstance(value, list) else [value]
                if self.needles is not None and any(self.needles.is_timestamp(float(v)) for v in values):
                    findings.append(f"<timestamp value in metric {key}>")
        for name, rec in content.config_records.items():
            entry["configs"][name] = {k: _value_kind(v) for k, v in rec.items()}
            findings += self._text(name, uplink)
            for key, value in rec.items():
                findings += self._text(key, uplink)
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, str):
                        findings += self._text(v, uplink)
                    elif isinstance(v, bytes):
                        findings += self._bytes(v, uplink)
                    elif uplink and self.needles is not None and isinstance(v, float) and self.needles.is_timestamp(v):
                        findings.append(f"<timestamp value in config {key}>")
        entry["findings"] = sorted(set(findings))
        return entry

    def _text(self, text: str, uplink: bool) -> list[str]:
        return [] if self.needles is None else self.needles.search_text(text, uplink)

    def _bytes(self, data: bytes, uplink: bool) -> list[str]:
        if self.needles is None:
            return []
        key = hashlib.sha256(data).hexdigest() + str(uplink)
        if key not in self._seen_blobs:  # the model blob repeats; search it once
            self._seen_blobs[key] = self.needles.search_bytes(data, uplink)
        return self._seen_blobs[key]

    def _capture(self, content: Any, pid: int, direction: str, stage: str) -> None:
        if self.capture_dir is None or content is None:
            return
        from flwr.common import bytes_to_ndarray

        for name, rec in content.array_records.items():
            for key, arr in rec.items():
                # Legacy (fitins/evaluateins) parameters travel as serialised bytes with no dtype.
                value = bytes_to_ndarray(bytes(arr.data)) if name.endswith(".parameters") else arr.numpy()
                if value.dtype.kind == "f" and value.ndim == 1 and value.shape[0] > 1000:
                    tag = f"{direction}-{name}-{key}".replace("/", "_").replace(".", "_")
                    np.save(Path(self.capture_dir) / f"p{pid:05d}-{tag}.npy", value)


def _secagg_stage(content: Any) -> str:
    configs = content.config_records.get("secaggplus_configs")
    return str(configs.get("stage", "")) if configs is not None else ""


def _value_kind(value: Any) -> str:
    if isinstance(value, list):
        return f"list[{_value_kind(value[0]) if value else ''}]({len(value)})"
    if isinstance(value, bytes):
        return f"bytes({len(value)})"
    return type(value).__name__


def summarise_messages(path: str | Path) -> dict[str, Any]:
    """What crossed, per (direction, type, stage): array/metric/config keys; and every finding."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    findings: list[dict[str, Any]] = []
    count = 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        count += 1
        key = (entry["direction"], entry["type"], entry.get("stage", ""))
        g = groups.setdefault(key, {"messages": 0, "arrays": set(), "metrics": set(), "configs": set()})
        g["messages"] += 1
        for rec, arrays in entry.get("arrays", {}).items():
            g["arrays"].update(f"{rec}/{k}:{a['dtype']}{a['shape']}" for k, a in arrays.items())
        for rec, metrics in entry.get("metrics", {}).items():
            g["metrics"].update(f"{rec}/{k}" for k in metrics)
        for rec, configs in entry.get("configs", {}).items():
            g["configs"].update(f"{rec}/{k}:{t}" for k, t in configs.items())
        if entry.get("findings"):
            findings.append({k: entry[k] for k in ("direction", "type", "stage", "partition", "findings")})
    table = [
        {"direction": d, "type": t, "stage": s, "messages": g["messages"],
         **{k: sorted(g[k]) for k in ("arrays", "metrics", "configs")}}
        for (d, t, s), g in sorted(groups.items())
    ]
    return {"messages": count, "table": table, "findings": findings, "passed": not findings}


def check_messages(path: str | Path) -> dict[str, Any]:
    """:func:`summarise_messages`, raising :class:`PrivacyLeakError` on any finding."""
    summary = summarise_messages(path)
    if summary["findings"]:
        first = summary["findings"][0]
        raise PrivacyLeakError(
            f"{len(summary['findings'])} message(s) carried user data; first: {first['direction']} "
            f"{first['type']} (partition {first['partition']}): {first['findings'][:5]}"
        )
    return summary


# --- leakage attack ------------------------------------------------------------
@dataclass
class ClientTruth:
    """What a client's training data touched: hashed item buckets and category rows."""

    items: set[int]
    categories: set[int]


def client_truths(users: Mapping[str, Sequence[Event]], order: Sequence[str], spec: ModelSpec,
                  taxonomy: Taxonomy, holdout_fraction: float = 0.1) -> list[ClientTruth]:
    """Per partition, the item buckets and category rows of the events it trains on."""
    from vane.client.tracker import InterestTracker
    from vane.shared.features import Featurizer

    featurizer = Featurizer(spec, taxonomy)
    out = []
    for uid in order:
        events = list(users[uid])
        train = events[: len(events) - InterestTracker.holdout_size(len(events), holdout_fraction)]
        feats = featurizer.encode(train)
        out.append(ClientTruth(set(np.unique(feats.item).tolist()) - {0},
                               set(np.unique(feats.cats).tolist()) - {0}))
    return out


def row_norms(delta: np.ndarray, spec: ModelSpec, name: str) -> np.ndarray:
    """L2 norm of each row of the named embedding inside a flat delta."""
    shape = dict(__import__("vane.shared.weights", fromlist=["weight_layout"]).weight_layout(spec))[name]
    return np.linalg.norm(delta[layout_slices(spec)[name]].reshape(shape).astype(np.float64), axis=1)


def guess_changed(norms: np.ndarray, threshold: float) -> set[int]:
    return set(np.flatnonzero(norms > threshold).tolist()) - {0}


def guess_top(scores: np.ndarray, k: int) -> set[int]:
    order = [i for i in np.argsort(-scores, kind="stable").tolist() if i != 0]
    return set(order[:k])


def precision_recall(guess: set[int], truth: set[int]) -> tuple[float, float]:
    hit = len(guess & truth)
    return (hit / len(guess) if guess else 0.0), (hit / len(truth) if truth else 1.0)


def _mean_pr(pairs: list[tuple[float, float]]) -> dict[str, float]:
    return {"precision": float(np.mean([p for p, _ in pairs])), "recall": float(np.mean([r for _, r in pairs]))}


def noise_threshold(sigma: float, dim: int, z: float = 4.0) -> float:
    """Row norm that Gaussian noise of std ``sigma`` in ``dim`` coordinates exceeds with tiny probability."""
    return sigma * (math.sqrt(dim) + z / math.sqrt(2.0)) if sigma > 0 else 1e-12


def attack(deltas: list[np.ndarray], truths: list[ClientTruth], spec: ModelSpec, name: str,
           threshold: float) -> dict[str, float]:
    """Per-client attack: rows of ``name`` whose change exceeds ``threshold``."""
    field_ = "items" if name == "emb/item" else "categories"
    pairs = [precision_recall(guess_changed(row_norms(d, spec, name), threshold), getattr(t, field_))
             for d, t in zip(deltas, truths, strict=True)]
    return _mean_pr(pairs)


def attack_aggregate(aggregate: np.ndarray, truths: list[ClientTruth], spec: ModelSpec,
                     name: str) -> dict[str, float]:
    """Each client's set guessed as the top-k changed rows of the aggregate (k = its true size)."""
    field_ = "items" if name == "emb/item" else "categories"
    norms = row_norms(aggregate, spec, name)
    pairs = [precision_recall(guess_top(norms, len(getattr(t, field_))), getattr(t, field_)) for t in truths]
    return _mean_pr(pairs)


def popularity_baseline(truths: list[ClientTruth], name: str) -> dict[str, float]:
    """Guess each client's set as the k most popular rows among all clients (k = its true size)."""
    field_ = "items" if name == "emb/item" else "categories"
    counts = Counter(i for t in truths for i in getattr(t, field_))
    size = max(counts) + 1 if counts else 1
    scores = np.zeros(size)
    for i, c in counts.items():
        scores[i] = c
    pairs = [precision_recall(guess_top(scores, len(getattr(t, field_))), getattr(t, field_)) for t in truths]
    return _mean_pr(pairs)


def device_noise(deltas: list[np.ndarray], clipping_norm: float, z: float, seed: int = 0) -> list[np.ndarray]:
    """Each delta clipped to ``clipping_norm`` plus Gaussian noise of std ``z·clipping_norm``."""
    from vane.client.mods import clip_l2

    rng = np.random.default_rng(seed)
    return [clip_l2(d, clipping_norm)[0] + rng.normal(0.0, z * clipping_norm, d.shape).astype(np.float32)
            for d in deltas]


# --- the runs ------------------------------------------------------------------
@dataclass
class AuditConfig:
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


def _load_captures(capture_dir: Path, n: int, pattern: str) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for pid in range(n):
        files = sorted(capture_dir.glob(f"p{pid:05d}-{pattern}.npy"))
        out.append(np.load(files[-1]) if files else None)
    return out


def run_isolated(**kwargs: Any) -> Any:
    """:func:`run_federated` in a fresh (spawned) process; returns its FederationResult.

    A second Flower simulation in one process was seen to hang (its ServerApp thread
    blocked inside numpy's OpenBLAS while building the initial weights), so every run
    of the audit gets a process of its own.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_run_federated, kwargs).result()


def _run_federated(kwargs: dict[str, Any]) -> Any:
    from vane.simulations.federation import run_federated

    return run_federated(**kwargs)


def run_audit(out_dir: str | Path, config: AuditConfig | None = None, progress: Any = None) -> dict[str, Any]:
    """Message audit and leakage attack over a plain FedAvg round, a SecAgg+ round and (with
    ``secagg_noise``) a SecAgg+ round with device clipping and server noise; writes audit.json/.md."""
    from vane.server.model import export_training_model
    from vane.simulations.synthetic import SyntheticPopulation

    cfg = config or AuditConfig()
    say = progress or (lambda *_: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pop = SyntheticPopulation(cfg.users, seed=cfg.seed)
    taxonomy = Taxonomy(pop.categories)
    spec = ModelSpec(num_categories=len(taxonomy), item_buckets=cfg.item_buckets, token_buckets=cfg.token_buckets)
    blob = export_training_model(spec)
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
        mods = [MessageAudit(log, needles, capture), *extra_mods]
        result = run_isolated(users=pop.users, taxonomy=taxonomy, spec=spec, out_dir=run_out, client_mods=mods,
                              server_config=server_config, **common)
        runs[name] = {"result": result, "messages": summarise_messages(log), "capture": capture, "log": log}
    # plain FedAvg: every client's delta, as the server received it
    deltas = _load_captures(runs["plain"]["capture"], len(order), "out-arrays-delta")
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
    weights_in = _load_captures(runs["secagg"]["capture"], len(order), "in-fitins_parameters-0")
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
        secure_dp = {"aggregated": m, "failed": dp_round["failed"], "noise-std": metrics.get("dp-noise-std"),
                     "epsilon": metrics.get("dp-epsilon"), "delta": metrics.get("dp-delta")}
        row(f"SecAgg+ with DP z={cfg.secagg_noise} (C={cfg.clipping_norm}, {m} of {len(order)} clients, "
            f"ε={_fmt(secure_dp['epsilon'])})", "noised aggregate only; top-k rows per client",
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


class DropoutAfterKeySharing:
    """ClientApp mod: partition ``pid`` drops out of SecAgg+ after sharing keys (fails the masked-vector stage)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def __call__(self, msg: Any, context: Any, call_next: Any) -> Any:
        if int(context.node_config.get("partition-id", -1)) == self.pid and \
                _secagg_stage(msg.content) == "collect_masked_vectors":
            raise RuntimeError(f"partition {self.pid} dropped out after key sharing")
        return call_next(msg, context)


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


def run_utility(out_dir: str | Path, config: UtilityConfig | None = None, progress: Any = None) -> list[dict[str, Any]]:
    """HR@5 and NDCG@10 of the federated model per noise multiplier, next to the ε it reached.

    ε is reported twice at ``dp-delta``: with the sampling used (``fraction`` of the users without
    replacement, replace-one adjacency) and the bound without amplification by sampling (see
    :mod:`vane.server.privacy`). After each level, ``OUT/utility.json`` and ``OUT/utility.md`` hold
    the rows so far.
    """
    import shutil
    import time

    from vane.server.model import export_training_model
    from vane.simulations.synthetic import SyntheticPopulation

    cfg = config or UtilityConfig()
    say = progress or (lambda *_: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pop = SyntheticPopulation(cfg.users, seed=cfg.seed)
    taxonomy = Taxonomy(pop.categories)
    spec = ModelSpec(num_categories=len(taxonomy))
    blob = export_training_model(spec)
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
                           "dp-delta": cfg.dp_delta},
        )
        rows.append(utility_row(z, cfg, result, time.perf_counter() - started))
        if not cfg.keep_devices:
            shutil.rmtree(run_dir / "devices", ignore_errors=True)
        write_utility(out, cfg, rows)
        say(markdown_table(rows[-1:]))
    return rows


def utility_row(noise: float, cfg: UtilityConfig, result: Any, seconds: float) -> dict[str, Any]:
    """One line of the utility table from a :class:`~vane.simulations.federation.FederationResult`."""
    from vane.server.privacy import DELTA_KEY, EPSILON_KEY, EPSILON_NO_AMPLIFICATION_KEY, sampled_clients

    last = result.rounds[-1]
    untrained = result.evaluate(0)
    return {
        "noise multiplier": noise, "rounds": last["round"], "fraction": cfg.fraction,
        "users per round": sampled_clients(cfg.users, cfg.fraction, 1),
        "ε (sampling used)": last["train"].get(EPSILON_KEY),
        "ε (no amplification)": last["train"].get(EPSILON_NO_AMPLIFICATION_KEY),
        "δ": last["train"].get(DELTA_KEY, cfg.dp_delta),
        "hr@5": last["evaluate"].get("hr@5"), "ndcg@10": last["evaluate"].get("ndcg@10"),
        "untrained hr@5": untrained.get("hr@5"), "untrained ndcg@10": untrained.get("ndcg@10"),
        "wall s": round(seconds),
    }


def write_utility(out: Path, cfg: UtilityConfig, rows: list[dict[str, Any]]) -> None:
    from dataclasses import asdict

    (out / "utility.json").write_text(json.dumps({"config": asdict(cfg), "rows": rows}, indent=1, default=str),
                                      encoding="utf-8")
    head = (f"{cfg.users} synthetic users; each round {cfg.fraction:g} of them train (without replacement) and "
            f"{cfg.fraction_evaluate:g} are evaluated; server-side DP, clipping norm {cfg.clipping_norm}, "
            f"{cfg.local_epochs} local epochs at learning rate {cfg.learning_rate}.")
    (out / "utility.md").write_text(f"# Utility vs privacy\n\n{head}\n\n{markdown_table(rows)}\n", encoding="utf-8")


# --- report --------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        return f"{value:.0e}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"  # δ
    return "" if value is None else str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def write_report(out: Path, report: dict[str, Any]) -> None:
    (out / "audit.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    parts = ["# Privacy audit", "", f"Population: {report.get('config')}", ""]
    for name, messages in report.get("messages", {}).items():
        parts += [f"## Messages, {name} run ({messages['messages']} recorded) — "
                  f"{'PASS' if messages['passed'] else 'FAIL'}", ""]
        parts.append(markdown_table([{**r, **{k: ", ".join(r[k]) for k in ("arrays", "metrics", "configs")}}
                                     for r in messages["table"]]))
        if messages["findings"]:
            parts += ["", "Findings:", *[f"- {f}" for f in messages["findings"][:20]]]
        parts.append("")
    if report.get("leakage"):
        parts += ["## Item-set and category leakage (mean over clients)", "", markdown_table(report["leakage"]), ""]
    if report.get("utility"):
        parts += ["## Utility vs privacy", "", markdown_table(report["utility"]), ""]
    (out / "audit.md").write_text("\n".join(parts), encoding="utf-8")
