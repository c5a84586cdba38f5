"""The Flower ClientApp mods of the lab: recording messages, injecting faults, dropping out of SecAgg+.

They wrap the real ClientApp in simulations (``run_federated(..., client_mods=[...])``); the product's
own mods (clipping, SecAgg+) are in :mod:`vane.client.mods`.

- :class:`MessageRecorder` is the one recording mod: it appends a description of each message a device
  receives and of each reply it sends (record names, array names, shapes and dtypes, metric values,
  config value kinds) to a JSONL file. Given :class:`~vane.simulations.audit.messages.Needles` it also
  searches every key, string, bytes value and array for the users' own data (the privacy audit), and given
  a capture folder it saves the weight and delta vectors (the leakage attack).
- :class:`FaultInjection` makes chosen partitions reply with NaN deltas or crash (the server's robustness).
- :class:`DropoutAfterKeySharing` makes a partition leave SecAgg+ after sharing its keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from vane.shared.protocol import (
    ARRAYS_RECORD,
    CONFIG_RECORD,
    LOCAL_EPOCHS_KEY,
    NODE_PARTITION_ID_KEY,
    SECAGG_CONFIGS_RECORD,
)

if TYPE_CHECKING:
    from flwr.app import Context, Message, RecordDict
    from flwr.clientapp.typing import ClientAppCallable
    from vane.simulations.audit.messages import Needles

#: Directions of a recorded message.
DOWNLINK = "server->client"
UPLINK = "client->server"

#: A train message's float vectors longer than this are captured (the weights and deltas, not metrics).
_CAPTURE_MIN_SIZE = 1000


def partition_id(context: Context) -> int:
    """The simulated user a node plays (``partition-id`` in its node_config; -1 outside a simulation)."""
    return int(context.node_config.get(NODE_PARTITION_ID_KEY, -1))


def secagg_stage(content: RecordDict) -> str:
    """The SecAgg+ stage a message belongs to; empty for messages outside SecAgg+."""
    configs = content.config_records.get(SECAGG_CONFIGS_RECORD)
    return str(configs.get("stage", "")) if configs is not None else ""


class MessageRecorder:
    """ClientApp mod: one JSON line per message in and per reply out, describing what it carries.

    Each line holds ``direction`` (:data:`DOWNLINK` or :data:`UPLINK`), ``type``, ``stage`` (SecAgg+),
    ``partition``, ``error``, ``record-keys``, ``arrays`` (record -> key -> dtype and shape), ``metrics``
    (record -> key -> value), ``configs`` (record -> key -> value kind) and ``findings`` (the needles
    found). A call that raises (an injected crash) records nothing.

    Parameters
    ----------
    path : path
        The JSONL file; lines are appended.
    needles : Needles, optional
        What to search for; without it messages are only described.
    capture_dir : path, optional
        Save each message's long float vectors (incoming weights, outgoing deltas) there as ``.npy``
        files named ``pNNNNN-{in|out}-{record}-{key}.npy``, for the leakage attack.
    directions : collection of str, default both
        Which directions to record; ``(UPLINK,)`` records replies only.
    """

    def __init__(self, path: str | Path, needles: Needles | None = None, capture_dir: str | Path | None = None,
                 directions: Collection[str] = (DOWNLINK, UPLINK)) -> None:
        unknown = set(directions) - {DOWNLINK, UPLINK}
        if unknown:
            raise ValueError(f"directions holds {sorted(unknown)}; expected {DOWNLINK!r} and/or {UPLINK!r}")
        self.path = str(path)
        self.needles = needles
        self.capture_dir = str(capture_dir) if capture_dir else None
        self.directions = tuple(directions)
        self._seen_blobs: dict[str, list[str]] = {}

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        pid = partition_id(context)
        head = {"type": str(msg.metadata.message_type), "stage": secagg_stage(msg.content), "partition": pid}
        lines = []
        if DOWNLINK in self.directions:
            lines.append({"direction": DOWNLINK, **head, **self.describe(msg, uplink=False)})
            self._capture(msg, pid, "in")
        reply = call_next(msg, context)
        if UPLINK in self.directions:
            lines.append({"direction": UPLINK, **head, **self.describe(reply, uplink=True)})
            self._capture(reply, pid, "out")
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.writelines(json.dumps(line) + "\n" for line in lines)
        return reply

    def describe(self, message: Message, uplink: bool) -> dict[str, Any]:
        """What ``message`` carries, and the needles found in it (``uplink``: sent by the device)."""
        entry: dict[str, Any] = {"error": message.has_error(), "record-keys": [], "arrays": {}, "metrics": {},
                                 "configs": {}, "findings": []}
        if not message.has_content():
            return entry
        content = message.content
        entry["record-keys"] = sorted(content.keys())
        findings: list[str] = []
        for name, rec in content.array_records.items():
            entry["arrays"][name] = {k: {"dtype": a.dtype, "shape": list(a.shape)} for k, a in rec.items()}
            findings += self._text(name, uplink)
            for key, arr in rec.items():
                findings += self._text(key, uplink) + self._bytes(bytes(arr.data), uplink)
        for name, metrics in content.metric_records.items():
            entry["metrics"][name] = dict(metrics.items())
            findings += self._text(name, uplink)
            for key, value in metrics.items():
                findings += self._text(key, uplink)
                values = value if isinstance(value, list) else [value]
                if self.needles is not None and any(self.needles.is_timestamp(float(v)) for v in values):
                    findings.append(f"<timestamp value in metric {key}>")
        for name, configs in content.config_records.items():
            entry["configs"][name] = {k: value_kind(v) for k, v in configs.items()}
            findings += self._text(name, uplink)
            for key, config_value in configs.items():
                findings += self._text(key, uplink)
                for v in config_value if isinstance(config_value, list) else [config_value]:
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

    def _capture(self, message: Message, pid: int, direction: str) -> None:
        if self.capture_dir is None or not message.has_content():
            return
        from flwr.common import bytes_to_ndarray

        for name, rec in message.content.array_records.items():
            for key, arr in rec.items():
                # Legacy (fitins/evaluateins) parameters travel as serialised bytes with no dtype.
                value = bytes_to_ndarray(bytes(arr.data)) if name.endswith(".parameters") else arr.numpy()
                if value.dtype.kind == "f" and value.ndim == 1 and value.shape[0] > _CAPTURE_MIN_SIZE:
                    tag = f"{direction}-{name}-{key}".replace("/", "_").replace(".", "_")
                    np.save(Path(self.capture_dir) / f"p{pid:05d}-{tag}.npy", value)


def value_kind(value: Any) -> str:
    """The kind of a config value, never the value itself: ``str``, ``bytes(N)``, ``list[int](N)`` …"""
    if isinstance(value, list):
        return f"list[{value_kind(value[0]) if value else ''}]({len(value)})"
    if isinstance(value, bytes):
        return f"bytes({len(value)})"
    return type(value).__name__


class FaultInjection:
    """ClientApp mod: partitions in ``nan`` reply to train messages with NaN deltas, partitions in ``crash`` raise.

    Parameters
    ----------
    nan : sequence of int, default ()
    crash : sequence of int, default ()
    malformed : sequence of int, default ()
        Partitions whose train messages arrive with ``local-epochs = "abc"`` (the ClientApp refuses them).
    """

    def __init__(self, nan: Sequence[int] = (), crash: Sequence[int] = (), malformed: Sequence[int] = ()) -> None:
        self.nan = set(nan)
        self.crash = set(crash)
        self.malformed = set(malformed)

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        from flwr.app import Array, ArrayRecord

        pid = partition_id(context)
        is_train = msg.metadata.message_type.startswith("train")
        if is_train and pid in self.crash:
            raise RuntimeError(f"injected crash on partition {pid}")
        if is_train and pid in self.malformed and msg.has_content() and CONFIG_RECORD in msg.content.config_records:
            msg.content.config_records[CONFIG_RECORD][LOCAL_EPOCHS_KEY] = "abc"
        reply = call_next(msg, context)
        if is_train and pid in self.nan and reply.has_content():
            for rec in reply.content.array_records.values():
                for key in list(rec.keys()):
                    rec[key] = Array(np.full(rec[key].numpy().shape, np.nan, dtype=np.float32))
            reply.content[ARRAYS_RECORD] = ArrayRecord(dict(reply.content[ARRAYS_RECORD].items()))
        return reply


class DropoutAfterKeySharing:
    """ClientApp mod: partition ``pid`` drops out of SecAgg+ after sharing keys (fails the masked-vector stage).

    Parameters
    ----------
    pid : int or None
        The partition that drops out; None: nobody does.
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if partition_id(context) == self.pid and secagg_stage(msg.content) == "collect_masked_vectors":
            raise RuntimeError(f"partition {self.pid} dropped out after key sharing")
        return call_next(msg, context)
