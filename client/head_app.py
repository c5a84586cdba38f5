"""The categoriser head's ClientApp: the device trains the head on its own labelled embeddings.

A head round (:mod:`vane.shared.head_protocol`) is a Flower ``train`` message. The device reads its
labelled examples (an embedding and a label each) from its store, and replies with numbers only:

- ``counts``: how many of its examples carry each label (float32[classes]) and ``num-examples``;
- ``train``: ``delta`` = local − global head weights after :data:`~vane.shared.head_protocol.EPOCHS_KEY`
  full-batch gradient steps of the (class-weighted) cross-entropy, ``num-examples`` and ``train-loss``.

The local loss of ``n`` examples is ``Σ w[y_i] · CE_i / n + l2/2 · |W|²`` with the server's class weights
``w`` (all 1 without them). With balanced weights the mean weight over the population is 1, so FedAvg of
the deltas weighted by ``num-examples`` after one step is exactly one central gradient step on all labels.

Where the examples come from (:data:`ExampleSource`): in a deployment, the device's store (node_config
``store`` and ``key-file``): :func:`vane.client.categorize_store.labelled_examples` with the embeddings
sealed beside the events, labels indexing :func:`vane.client.topic_head.head_topics`. In a simulation,
``<sim-dir>/head-<partition-id>.npz`` (``x`` float16[n, dims] as the store keeps embeddings, ``y`` int).
No title, token id or embedding is ever put in a reply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod
from vane.client.mods import error_reply, privacy_mods
from vane.client.topic_head import head_layout
from vane.shared import head_protocol as h
from vane.shared import protocol as p
from vane.shared.errors import ConfigError, ModelError, VaneError

__all__ = ["ExampleSource", "build_head_client_app", "fit_local", "sim_examples_path", "train_head_on_device"]

logger = logging.getLogger("vane.client")

#: The device's labelled examples for a node: ``(x float32[n, dims], y int64[n])``.
ExampleSource = Callable[[Context], tuple[np.ndarray, np.ndarray]]


def sim_examples_path(sim_dir: str | Path, partition_id: int) -> Path:
    """Where simulated device ``partition_id`` keeps its labelled embeddings."""
    return Path(sim_dir) / f"head-{int(partition_id):05d}.npz"


def _sim_source(sim_dir: str | Path) -> ExampleSource:
    def read(context: Context) -> tuple[np.ndarray, np.ndarray]:
        partition = context.node_config.get(p.NODE_PARTITION_ID_KEY)
        if isinstance(partition, bool) or not isinstance(partition, (int, str)) or not str(partition).isdigit():
            raise ConfigError(f"node_config partition-id is {partition!r}; expected a non-negative integer")
        with np.load(sim_examples_path(sim_dir, int(partition))) as data:
            return np.asarray(data["x"], dtype=np.float32), np.asarray(data["y"], dtype=np.int64)

    return read


def store_examples(context: Context) -> tuple[np.ndarray, np.ndarray]:
    """The labelled examples of this device's store (node_config ``store`` and ``key-file``), embedded by
    the store's encoder (the sealed embeddings where they exist)."""
    from vane.client.categorize_store import _example_vectors, _labelled, store_encoder
    from vane.client.tracker import InterestTracker

    node = context.node_config
    if p.NODE_STORE_KEY not in node or p.NODE_KEY_FILE_KEY not in node:
        raise ConfigError("node_config needs 'store' and 'key-file' to train the categoriser head")
    with InterestTracker.open(str(node[p.NODE_STORE_KEY]), key_file=str(node[p.NODE_KEY_FILE_KEY])) as tracker:
        store = tracker.store
        encoder = store_encoder(store)
        if encoder is None:
            raise ConfigError("this device has no text encoder installed (light mode): it cannot train the head")
        examples = _labelled(store)
        if not examples:
            return np.zeros((0, 1), np.float32), np.zeros(0, np.int64)
        x = _example_vectors(store, encoder, examples)
    return x, np.array([label for _, _, label in examples], dtype=np.int64)


def fit_local(flat: np.ndarray, x: np.ndarray, y: np.ndarray, dims: int, classes: int, *, epochs: int,
              learning_rate: float, l2: float, class_weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """``(new flat weights, loss before training)`` after ``epochs`` full-batch steps (see the module docstring)."""
    layout = head_layout(dims, classes)
    w = flat[: layout["W"][1]].reshape(dims, classes).astype(np.float32).copy()
    b = flat[layout["b"][0] : layout["b"][1]].astype(np.float32).copy()
    weights = np.ones(classes, np.float32) if class_weights is None else class_weights.astype(np.float32)
    sample = (weights[y] / len(y)).astype(np.float32)
    onehot = np.zeros((len(y), classes), dtype=np.float32)
    onehot[np.arange(len(y)), y] = 1.0
    first = float("nan")
    for step in range(epochs):
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=1, keepdims=True)
        if step == 0:
            first = float(-(sample * np.log(np.maximum(prob[np.arange(len(y)), y], 1e-12))).sum())
        grad = (prob - onehot) * sample[:, None]
        w -= np.float32(learning_rate) * (x.T @ grad + np.float32(l2) * w)
        b -= np.float32(learning_rate) * grad.sum(axis=0)
    return np.concatenate([w.ravel(), b]).astype(np.float32), first


def _number(config: ConfigRecord, key: str, kind: type, low: float) -> float:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not kind(value) >= low \
            or not np.isfinite(float(value)):
        raise ConfigError(f"{key} is {value!r}; expected a number >= {low}")
    return float(value)


def _reply(msg: Message, vector: np.ndarray, metrics: dict[str, float]) -> Message:
    content = RecordDict({p.ARRAYS_RECORD: ArrayRecord({p.DELTA_KEY: Array(vector.astype(np.float32))}),
                          p.METRICS_RECORD: MetricRecord({k: float(v) for k, v in metrics.items()})})
    return Message(content=content, reply_to=msg)


def train_head_on_device(msg: Message, context: Context, source: ExampleSource) -> Message:
    """Answer one head round (counts or train) from ``source``'s examples; a bad message raises ConfigError."""
    if p.CONFIG_RECORD not in msg.content.config_records:
        raise ConfigError(f"a head round needs the {p.CONFIG_RECORD!r} config record")
    config = msg.content.config_records[p.CONFIG_RECORD]
    kind = config.get(h.HEAD_ROUND_KEY)
    if kind not in (h.ROUND_COUNTS, h.ROUND_TRAIN):
        raise ConfigError(f"{h.HEAD_ROUND_KEY} is {kind!r}; expected {h.ROUND_COUNTS!r} or {h.ROUND_TRAIN!r}")
    dims, classes = int(_number(config, h.DIMS_KEY, int, 1)), int(_number(config, h.CLASSES_KEY, int, 2))
    x, y = source(context)
    if len(y) == 0:
        raise ConfigError("this device has no labelled examples to train the head on")
    if x.ndim != 2 or x.shape != (len(y), dims) or y.min() < 0 or y.max() >= classes:
        raise ConfigError(f"the device's examples are {list(x.shape)} with labels in {int(y.min())}..{int(y.max())}; "
                          f"expected [n, {dims}] and labels in 0..{classes - 1}")
    if kind == h.ROUND_COUNTS:
        counts = np.bincount(y, minlength=classes).astype(np.float32)
        return _reply(msg, counts, {p.NUM_EXAMPLES_KEY: len(y)})
    arrays = msg.content.array_records
    if p.ARRAYS_RECORD not in arrays or p.WEIGHTS_KEY not in arrays[p.ARRAYS_RECORD]:
        raise ConfigError(f"a head train round needs {p.ARRAYS_RECORD}/{p.WEIGHTS_KEY}")
    flat = msg.content.array_records[p.ARRAYS_RECORD][p.WEIGHTS_KEY].numpy()
    size = head_layout(dims, classes)["b"][1]
    if flat.dtype != np.float32 or flat.shape != (size,) or not np.isfinite(flat).all():
        raise ModelError(f"the global head is {flat.dtype}{list(flat.shape)}; expected finite float32[{size}]")
    weights = None
    if h.CLASS_WEIGHTS_KEY in config:
        raw = config[h.CLASS_WEIGHTS_KEY]
        if isinstance(raw, str):  # JSON text under SecAgg+ (the legacy workflow's config holds scalars only)
            try:
                raw = json.loads(raw)
            except ValueError:
                raw = []
        weights = np.asarray(raw if isinstance(raw, list) else [], dtype=np.float64)
        if weights.shape != (classes,) or not np.isfinite(weights).all() or (weights < 0).any():
            raise ConfigError(f"{h.CLASS_WEIGHTS_KEY} holds {weights.size} values; expected {classes} finite, >= 0")
    new, loss = fit_local(flat, x, y, dims, classes, epochs=int(_number(config, h.EPOCHS_KEY, int, 1)),
                          learning_rate=_number(config, h.LEARNING_RATE_KEY, float, 0.0),
                          l2=_number(config, h.L2_KEY, float, 0.0), class_weights=weights)
    return _reply(msg, new - flat, {p.NUM_EXAMPLES_KEY: len(y), p.TRAIN_LOSS_KEY: loss})


def build_head_client_app(sim_dir: str | Path | None = None, mods: Sequence[Mod] = (),
                          source: ExampleSource | None = None) -> ClientApp:
    """The head's ClientApp: examples from ``source``, else ``sim_dir``'s files, else the device's store.

    ``mods`` wrap :func:`vane.client.mods.privacy_mods` (SecAgg+ masking and DP clipping, inert unless the
    server asks), so a mod in ``mods`` sees what leaves the device. A message it refuses (a
    :class:`VaneError`) is answered with an error reply naming it.
    """
    read = source or (_sim_source(sim_dir) if sim_dir is not None else store_examples)
    app = ClientApp(mods=[*mods, *privacy_mods()])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        try:
            return train_head_on_device(msg, context, read)
        except VaneError as exc:
            logger.warning("refused a head message: %s: %s", type(exc).__name__, exc)
            return error_reply(msg, exc)

    return app
