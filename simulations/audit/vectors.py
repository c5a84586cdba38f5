"""The vector audit: does any reply carry a device's count vector, or any scaled copy of it?

The message audit (:mod:`~vane.simulations.audit.messages`) searches for the users' strings. Federated
analytics sends numbers: each device's popularity and transition counts (:mod:`vane.client.population`).
Under SecAgg+ none of them may reach the server in the clear. :class:`ReplyCapture` (a ClientApp mod)
saves every payload of every reply a device sends (array data, bytes and numeric lists in config and
metric records, one file each); :func:`vector_copies` reads a payload as every numeric type at every byte
alignment and slides the vector along it, reporting where the Pearson correlation reaches ``threshold``
(0.99): an exact copy, ``a·x + b`` (the centring the device applies, a quantised copy) and a rescaled
float16 copy all score ≈ 1, while SecAgg+'s masked integers score ≈ 0. :func:`check_vectors` raises
:class:`~vane.simulations.audit.messages.PrivacyLeakError` on any finding.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from vane.simulations.audit.messages import PrivacyLeakError

if TYPE_CHECKING:
    from flwr.app import Context, Message
    from flwr.clientapp.typing import ClientAppCallable

__all__ = ["ReplyCapture", "check_vectors", "payloads", "vector_copies"]

#: Numeric types a vector could be written as (little- and big-endian).
DTYPES = ("<f2", "<f4", "<f8", "<i2", "<i4", "<i8", "<u2", "<u4", "<u8", ">f4", ">f8", ">i4", ">i8")


def payloads(message: Message) -> list[bytes]:
    """Every payload ``message`` carries: array data, bytes config values, numeric lists as float64."""
    if not message.has_content():
        return []
    out: list[bytes] = []
    for rec in message.content.array_records.values():
        out += [bytes(arr.data) for arr in rec.values()]
    records: list[Any] = [*message.content.config_records.values(), *message.content.metric_records.values()]
    for record in records:
        for value in record.values():
            values = value if isinstance(value, list) else [value]
            out += [v for v in values if isinstance(v, bytes)]
            numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if len(numbers) > 1:
                out.append(np.asarray(numbers, dtype="<f8").tobytes())
    return out


class ReplyCapture:
    """ClientApp mod: writes each payload of each reply to ``DIR/pNNNNN-<stage or type>-<id>-<i>.bin``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        from vane.simulations.mods import partition_id, secagg_stage

        reply = call_next(msg, context)
        self.directory.mkdir(parents=True, exist_ok=True)
        stage = secagg_stage(msg.content) or str(msg.metadata.message_type)
        tag = uuid.uuid4().hex[:12]
        for i, data in enumerate(payloads(reply)):
            (self.directory / f"p{partition_id(context):05d}-{stage}-{tag}-{i}.bin").write_bytes(data)
        return reply


#: Windows x entries up to which the correlation is computed directly (exact); beyond it by FFT.
_DIRECT_LIMIT = 50_000_000
#: Values beyond this (a float view of random bytes) make a window undefined.
_HUGE = 1e20


def _window_correlation(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``x`` with every window of ``y`` of its length (NaN where undefined)."""
    d, n = len(x), len(y)
    windows = n - d + 1
    bad = ~np.isfinite(y) | (np.abs(y) > _HUGE)
    y = np.where(bad, 0.0, y)
    xc = (x - x.mean()) / np.linalg.norm(x - x.mean())
    cb = np.concatenate(([0], np.cumsum(bad)))
    corr = np.full(windows, np.nan)
    with np.errstate(all="ignore"):
        if windows * d <= _DIRECT_LIMIT:
            view = np.lib.stride_tricks.sliding_window_view(y, d)
            rows = max(1, 2_000_000 // d)
            for i in range(0, windows, rows):
                w = view[i : i + rows]
                wc = w - w.mean(axis=1, keepdims=True)
                corr[i : i + rows] = (wc @ xc) / np.linalg.norm(wc, axis=1)
        else:  # long payloads: sums by FFT and prefix sums (less exact next to huge values)
            size = 1 << int(n + d - 1).bit_length()
            numerator = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(xc, size)), size)[:windows]
            c1 = np.concatenate(([0.0], np.cumsum(y)))
            c2 = np.concatenate(([0.0], np.cumsum(y * y)))
            s1, s2 = c1[d:] - c1[:-d], c2[d:] - c2[:-d]
            corr = numerator / np.sqrt(np.maximum(s2 - s1 * s1 / d, 0.0))
    corr[(cb[d:] - cb[:-d]) > 0] = np.nan
    corr[~np.isfinite(corr)] = np.nan
    return corr


def vector_copies(data: bytes, vector: np.ndarray, threshold: float = 0.99) -> list[str]:
    """Where ``data`` holds ``vector`` (or ``a·x + b`` of it) as any of :data:`DTYPES`, at any byte offset."""
    x = np.asarray(vector, dtype=np.float64).ravel()
    d = len(x)
    if d < 8 or float(np.std(x)) == 0.0:
        raise ValueError(f"a vector of {d} entries (std {float(np.std(x)) if d else 0:.3g}) cannot be searched for; "
                         "expected at least 8 entries that are not all equal")
    found: list[str] = []
    for dtype in DTYPES:
        size = np.dtype(dtype).itemsize
        for offset in range(size):
            count = (len(data) - offset) // size
            if count < d:
                continue
            with np.errstate(all="ignore"):
                y = np.frombuffer(data, dtype=dtype, count=count, offset=offset).astype(np.float64)
            corr = _window_correlation(y, x)
            hits = np.flatnonzero(np.abs(np.nan_to_num(corr)) >= threshold)
            found += [f"{dtype} at byte {offset + int(i) * size} (r = {corr[i]:.4f})" for i in hits[:3]]
    return found


def check_vectors(directory: str | Path, vectors: Mapping[int, np.ndarray], threshold: float = 0.99) -> dict[str, Any]:
    """Search every captured reply payload for every device's vector; raise PrivacyLeakError on any finding.

    Parameters
    ----------
    directory : path
        A :class:`ReplyCapture` folder.
    vectors : mapping of partition -> vector
        Each device's count vector as it would be sent in the clear.
    """
    files = sorted(Path(directory).glob("p*.bin"))
    findings: list[dict[str, Any]] = []
    for path in files:
        data = path.read_bytes()
        for pid, vec in vectors.items():
            hits = vector_copies(data, vec, threshold)
            if hits:
                findings.append({"file": path.name, "partition": pid, "hits": hits})
    summary = {"payloads": len(files), "vectors": len(vectors), "findings": findings, "passed": not findings}
    if findings:
        first = findings[0]
        raise PrivacyLeakError(f"{len(findings)} reply payload(s) carried a device's count vector; first: partition "
                               f"{first['partition']}'s vector in {first['file']}: {first['hits'][:2]}")
    return summary
