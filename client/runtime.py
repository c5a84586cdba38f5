"""Running the exported interest model on the device, without TensorFlow.

:class:`LiteModel` wraps one LiteRT interpreter. It loads with
``ai_edge_litert`` and falls back to ``tflite_runtime``; setting
``VANE_RUNTIME=tflite-runtime`` forces the fallback. The model's embedded
ModelSpec is read at load time, so a model built for another spec is refused
before it is ever called.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from vane.shared.errors import ModelError, SpecError, SpecMismatchError
from vane.shared.features import Features, TrainingBatch, pad_batch
from vane.shared.ranker_data import RankerExamples
from vane.shared.spec import ModelSpec
from vane.shared.weights import Weights

logger = logging.getLogger("vane.client")

_FEATURE_KEYS = Features.FIELDS
_TRAINING_SIGNATURES = ("train", "get_weights", "set_weights", "reset_optimizer")


def _interpreter_class() -> Any:
    """The Interpreter class of the runtime in use."""
    forced = os.environ.get("VANE_RUNTIME", "").strip().lower()
    if forced not in ("", "ai-edge-litert", "tflite-runtime"):
        raise ModelError(f"VANE_RUNTIME is {forced!r}; expected 'ai-edge-litert' or 'tflite-runtime'")
    if forced != "tflite-runtime":
        try:
            from ai_edge_litert.interpreter import Interpreter

            return Interpreter
        except ImportError:
            if forced:
                raise ModelError("VANE_RUNTIME=ai-edge-litert but ai-edge-litert is not installed") from None
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        raise ModelError("no LiteRT runtime: pip install ai-edge-litert (or tflite-runtime)") from None
    return Interpreter


def runtime_name() -> str:
    """``"ai-edge-litert"`` or ``"tflite-runtime"``: the runtime :class:`LiteModel` would use."""
    return "tflite-runtime" if _interpreter_class().__module__.startswith("tflite_runtime") else "ai-edge-litert"


class _Signature:
    """A signature runner that resizes and allocates only when input shapes change."""

    def __init__(self, interpreter: Any, key: str) -> None:
        runner = interpreter.get_signature_runner(key)
        self._runner = runner
        self._wrapper = getattr(runner, "_interpreter_wrapper", None)
        self._inputs: dict[str, int] = dict(getattr(runner, "_inputs", {}))
        self._outputs = list(getattr(runner, "_outputs", []))
        self._subgraph = getattr(runner, "_subgraph_index", None)
        self._fast = self._wrapper is not None and self._subgraph is not None and bool(self._outputs)
        self._shapes: dict[str, tuple[int, ...]] | None = None

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        shapes = {name: value.shape for name, value in inputs.items()}
        if not self._fast or shapes != self._shapes:
            out: dict[str, np.ndarray] = self._runner(**inputs)
            self._shapes = shapes
            return out
        wrapper, subgraph = self._wrapper, self._subgraph
        for name, value in inputs.items():
            wrapper.SetTensor(self._inputs[name], value, subgraph)  # type: ignore[union-attr]
        wrapper.Invoke(subgraph)  # type: ignore[union-attr]
        return {name: wrapper.GetTensor(index, subgraph) for name, index in self._outputs}  # type: ignore[union-attr]


@dataclass
class Prediction:
    """Outputs of ``step`` (shapes (C,), (C,), (1, U), (1, U)) or ``infer`` ((B, T, C) twice, (B, U) twice)."""

    interest: np.ndarray
    intensity: np.ndarray
    h: np.ndarray
    c: np.ndarray


class _Released(dict[str, Any]):
    """The signatures of a released model: a call is a clear error."""

    def __missing__(self, key: str) -> Any:
        raise ModelError(f"the model's {key!r} signature is gone: its tracker was closed and released the "
                         "interpreter; open the tracker again")


class LiteModel:
    """One exported interest model in a LiteRT interpreter.

    Calls are serialised by a lock: all signatures of one interpreter share
    its variables and tensors.
    """

    def __init__(self, interpreter: Any, spec: ModelSpec) -> None:
        self.spec = spec
        self._interpreter = interpreter
        self._lock = threading.Lock()
        keys = set(interpreter.get_signature_list())
        self._signatures = {key: _Signature(interpreter, key) for key in keys if key != "spec_info"}
        self.has_training = all(key in keys for key in _TRAINING_SIGNATURES)
        self._step_shapes = ((1, spec.max_categories_per_event), (1, spec.tokens_per_title))

    # -- loading ------------------------------------------------------------

    @classmethod
    def from_bytes(cls, blob: bytes, spec: ModelSpec | None = None) -> LiteModel:
        """Load a model; refuse it unless its embedded spec hashes like ``spec`` (if given)."""
        interpreter_class = _interpreter_class()
        try:
            interpreter = interpreter_class(model_content=bytes(blob))
            keys = interpreter.get_signature_list()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"the model bytes ({len(blob)} bytes) are not a loadable LiteRT model: {exc}") from None
        missing = [key for key in ("infer", "step", "spec_info") if key not in keys]
        if missing:
            raise ModelError(
                f"the model lacks the signature(s) {', '.join(missing)}; export it with vane server export-model"
            )
        embedded = _read_spec(interpreter)
        if spec is not None and spec.hash != embedded.hash:
            raise SpecMismatchError(
                f"the model was exported for spec {embedded.hash} but spec {spec.hash} was expected; "
                "export the model again from the expected spec, or load the matching spec"
            )
        model = cls(interpreter, embedded)
        logger.debug(
            "loaded model of spec %s with %s (training=%s)",
            embedded.hash,
            interpreter_class.__module__,
            model.has_training,
        )
        return model

    @classmethod
    def from_path(cls, path: str | Path, spec: ModelSpec | None = None) -> LiteModel:
        try:
            blob = Path(path).read_bytes()
        except OSError as exc:
            raise ModelError(f"model file {str(path)!r} cannot be read: {exc}") from None
        return cls.from_bytes(blob, spec)

    # -- inference ----------------------------------------------------------

    def zero_state(self, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """A fresh LSTM state (h, c) for ``batch`` sequences."""
        shape = (batch, self.spec.lstm_units)
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def step(self, features_row: Features, h: np.ndarray, c: np.ndarray) -> Prediction:
        """Advance one event (``features_row`` has one row); returns its prediction and the new state."""
        f, k, l_ = features_row, self._step_shapes[0], self._step_shapes[1]
        with self._lock:
            out = self._signatures["step"](
                cats=_i32(f.cats, k),
                item=_i32(f.item, (1,)),
                tokens=_i32(f.tokens, l_),
                gap=_i32(f.gap, (1,)),
                kind=_i32(f.kind, (1,)),
                h=_f32(h),
                c=_f32(c),
                **self._text(f, (1, self.spec.text_dim)),
            )
        return Prediction(out["interest"][0], out["intensity"][0], out["h"], out["c"])

    def infer(
        self,
        features: Features,
        mask: np.ndarray | None = None,
        h0: np.ndarray | None = None,
        c0: np.ndarray | None = None,
    ) -> Prediction:
        """Predictions at every position of (B, T, ...) features, carrying the state through.

        ``T`` may be any length: windows of ``spec.window`` run in turn and the
        last is padded with mask 0. Where ``mask`` is 0 the state passes through.
        """
        batch, length = np.shape(features.item)[:2]
        window = self.spec.window
        mask_arr = np.ones((batch, length), np.float32) if mask is None else _f32(mask)
        h, c = self.zero_state(batch) if h0 is None else (_f32(h0), _f32(c0))
        if c0 is None and h0 is not None:
            c = self.zero_state(batch)[1]
        padded = -(-max(length, 1) // window) * window
        arrays = [_pad_time(_i32(getattr(features, key)), padded) for key in _FEATURE_KEYS]
        text = {key: _pad_time(a, padded) for key, a in self._text(features, (batch, length, -1)).items()}
        mask_arr = _pad_time(mask_arr, padded)
        interest, intensity = [], []
        for start in range(0, padded, window):
            chunk = slice(start, start + window)
            inputs = {key: np.ascontiguousarray(a[:, chunk]) for key, a in zip(_FEATURE_KEYS, arrays, strict=True)}
            inputs.update({key: np.ascontiguousarray(a[:, chunk]) for key, a in text.items()})
            with self._lock:
                out = self._signatures["infer"](**inputs, mask=np.ascontiguousarray(mask_arr[:, chunk]), h0=h, c0=c)
            h, c = out["h"], out["c"]
            interest.append(out["interest"])
            intensity.append(out["intensity"])
        return Prediction(
            np.concatenate(interest, axis=1)[:, :length], np.concatenate(intensity, axis=1)[:, :length], h, c
        )

    def infer_sequence(self, features: Features, h: np.ndarray, c: np.ndarray) -> Prediction:
        """Run one person's events through ``infer`` from the state (h, c).

        Parameters
        ----------
        features : Features
            One sequence, shapes (N, ...): e.g. ``Featurizer.encode(events)``.
        h, c : ndarray
            The LSTM state before the first event, shape (1, U) (see :meth:`zero_state`).

        Returns
        -------
        Prediction
            ``interest`` and ``intensity`` at every position, (N, C) each, and the state (1, U)
            after the last event: the same numbers as calling :meth:`step` event by event.
        """
        out = self.infer(features.map(lambda a: a[None]), h0=h, c0=c)
        return Prediction(out.interest[0], out.intensity[0], out.h, out.c)

    # -- training -----------------------------------------------------------

    def train(self, batch: TrainingBatch, lr: float | None = None) -> float:
        """One optimizer step; a batch with fewer than ``spec.batch`` windows is padded with weight-0 rows."""
        self._require_training("train")
        spec = self.spec
        rows = len(batch.features)
        if rows > spec.batch:
            raise ModelError(f"a training batch has {rows} windows; this model takes at most {spec.batch}")
        if rows < spec.batch:
            batch = pad_batch(
                batch.features,
                batch.interest,
                batch.intensity,
                batch.weight,
                spec.batch,
                spec.lstm_units,
                batch.h0,
                batch.c0,
            )
        f = batch.features
        rate = np.asarray([spec.learning_rate if lr is None else lr], dtype=np.float32)
        with self._lock:
            out = self._signatures["train"](
                **{key: _i32(getattr(f, key)) for key in _FEATURE_KEYS},
                h0=_f32(batch.h0),
                c0=_f32(batch.c0),
                interest=_f32(batch.interest),
                intensity=_f32(batch.intensity),
                weight=_f32(batch.weight),
                lr=rate,
                **self._text(f, (*np.shape(f.item), -1)),
            )
        return float(np.asarray(out["loss"]).reshape(-1)[0])

    def _text(self, f: Features, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        """The ``text`` input for a spec with ``text_dim`` (zeros when ``f`` carries none), else nothing."""
        dims = self.spec.text_dim
        if not dims:
            return {}
        if f.text is None:
            return {Features.TEXT: np.zeros(tuple(dims if n == -1 else n for n in shape), np.float32)}
        return {Features.TEXT: _f32(f.text).reshape(shape)}

    # -- the candidate ranker -------------------------------------------------

    @property
    def has_ranker(self) -> bool:
        """Whether the model has the candidate ranker's ``rank`` signature."""
        return self.spec.has_ranker and "rank" in self._signatures

    def rank(self, features: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masked next-category scores and next-window intensities of (B, C, F) candidate features, (B, C) each."""
        if not self.has_ranker:
            raise ModelError("this model has no candidate ranker: export it from a spec with ranker_units > 0")
        with self._lock:
            out = self._signatures["rank"](features=_f32(features), mask=_f32(mask))
        return np.asarray(out["score"]), np.asarray(out["intensity"])

    def train_ranker(self, examples: RankerExamples, lr: float) -> float:
        """One ranker step on at most ``spec.ranker_batch`` queries (padded with weight-0 ones); the loss."""
        self._require_training("train_ranker")
        if "train_ranker" not in self._signatures:
            raise ModelError("this model has no candidate ranker to train")
        batch = self.spec.ranker_batch
        n = len(examples)
        if n > batch:
            raise ModelError(f"a ranker batch has {n} queries; this model takes at most {batch}")
        weight = np.zeros(batch, np.float32)
        weight[:n] = 1.0

        def grow(a: np.ndarray) -> np.ndarray:
            return _f32(np.concatenate([a, np.zeros((batch - n, *a.shape[1:]), np.float32)]) if n < batch else a)

        with self._lock:
            out = self._signatures["train_ranker"](
                features=grow(examples.features), mask=grow(examples.mask), target=grow(examples.target),
                future=grow(examples.future), weight=weight, lr=np.asarray([lr], np.float32))
        return float(np.asarray(out["loss"]).reshape(-1)[0])

    def get_weights(self) -> Weights:
        self._require_training("get_weights")
        with self._lock:
            flat = self._signatures["get_weights"]()["weights"]
        return Weights(self.spec.hash, np.asarray(flat, dtype=np.float32))

    def set_weights(self, weights: Weights) -> None:
        """Load ``weights``; refuses weights made for another spec."""
        self._require_training("set_weights")
        weights.check(self.spec)
        flat = Weights.from_flat(self.spec, weights.flat).flat
        with self._lock:
            self._signatures["set_weights"](weights=flat)

    def reset_optimizer(self) -> None:
        """Zero the optimizer slots and step counter, keeping the weights."""
        self._require_training("reset_optimizer")
        with self._lock:
            self._signatures["reset_optimizer"]()

    def release(self) -> None:
        """Free the interpreter now (its tensors and the model bytes); any later call raises ModelError."""
        with self._lock:
            self._interpreter = None
            self._signatures = _Released()

    def _require_training(self, what: str) -> None:
        if not self.has_training:
            raise ModelError(f"{what} needs a training export; this model is inference-only")


def _read_spec(interpreter: Any) -> ModelSpec:
    try:
        raw = interpreter.get_signature_runner("spec_info")()["spec_json"]
        return ModelSpec.from_dict(json.loads(np.asarray(raw, dtype=np.uint8).tobytes().decode("utf-8")))
    except (ValueError, SpecError, RuntimeError, KeyError) as exc:
        raise ModelError(f"the model's embedded spec cannot be read: {exc}") from None


def _pad_time(a: np.ndarray, length: int) -> np.ndarray:
    pad = length - a.shape[1]
    if pad == 0:
        return a
    return np.concatenate([a, np.zeros((a.shape[0], pad, *a.shape[2:]), dtype=a.dtype)], axis=1)


def _i32(a: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    # the fast path matters: step is called per event and targets tens of microseconds
    arr: np.ndarray = a
    if type(a) is not np.ndarray or a.dtype != np.int32 or not a.flags.c_contiguous:
        arr = np.ascontiguousarray(a, dtype=np.int32)
    return arr if shape is None or arr.shape == shape else arr.reshape(shape)


def _f32(a: Any) -> np.ndarray:
    arr: np.ndarray = a
    if type(a) is not np.ndarray or a.dtype != np.float32 or not a.flags.c_contiguous:
        arr = np.ascontiguousarray(a, dtype=np.float32)
    return arr
