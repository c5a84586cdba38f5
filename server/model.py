"""The interest model in TensorFlow, and its LiteRT exports.

A hand-written, unrolled LSTM reads one embedded event per step and feeds two
heads: a softmax over the next event's categories (``interest``) and a sigmoid
per category for the next ``intensity_horizon`` events (``intensity``).

The training export has these signatures, all with TFLite builtins only:

``infer``            a window of events at a dynamic batch, state carried in and out
``step``             one event, state carried in and out
``train``            one SGD or Adam step at the static batch ``spec.batch``
``get_weights``      the flat float32 vector in :func:`vane.shared.weights.weight_layout` order
``set_weights``      the inverse
``reset_optimizer``  zeroes the optimizer slots and step counter
``spec_info``        the ModelSpec as UTF-8 JSON bytes, so a runtime can refuse a mismatching model
``rank``, ``train_ranker``  with a ranker in the spec: see :mod:`vane.server.ranker_model`

With ``spec.text_dim`` the event's text embedding is one more input, ``text`` (float32, ``(..., text_dim)``)
of ``infer``, ``step`` and ``train``: projected by ``text/kernel`` and ``text/bias`` and concatenated to the
other embeddings (:mod:`vane.server.text_input`).

Inference exports have only ``infer``, ``step``, ``spec_info`` (and ``rank``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from vane.server.ranker_model import add_ranker
from vane.server.text_input import project_text, text_array, text_specs
from vane.shared.errors import ModelError
from vane.shared.features import Features, TrainingBatch
from vane.shared.spec import ModelSpec
from vane.shared.weights import Weights, lstm_layout, weight_layout

logger = logging.getLogger("vane.server")

QUANTIZATIONS = (None, "f16", "int8")
_BETA1, _BETA2, _EPSILON = 0.9, 0.999, 1e-7


def spec_json(spec: ModelSpec) -> bytes:
    """The canonical JSON bytes embedded in every export."""
    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8")


def _orthonormal_rows(a: np.ndarray) -> np.ndarray:
    """Gram-Schmidt on the rows of ``a`` with elementwise numpy only.

    ``np.linalg.qr`` goes through multi-threaded LAPACK, which was seen to hang
    when the ServerApp builds a model in Flower's server thread next to Ray.
    """
    rows: list[np.ndarray] = []
    for row in a:
        v = row.astype(np.float64)
        for q in rows:
            v = v - np.sum(v * q) * q
        rows.append(v / np.sqrt(np.sum(v * v)))
    return np.stack(rows)


def initial_weights(spec: ModelSpec) -> dict[str, np.ndarray]:
    """Seeded starting values for every array of :func:`weight_layout`."""
    rng = np.random.default_rng(spec.seed)
    u = spec.lstm_units
    out: dict[str, np.ndarray] = {}
    for name, shape in weight_layout(spec):
        if name.startswith("emb/"):
            value = rng.uniform(-0.05, 0.05, shape)
        elif name == "lstm/recurrent":
            value = _orthonormal_rows(rng.normal(size=(u, 4 * u)))
        elif name == "lstm/bias":
            value = np.zeros(shape)
            value[u : 2 * u] = 1.0  # forget gate starts open
        elif name.endswith("bias"):
            value = np.zeros(shape)
        else:
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            value = rng.uniform(-limit, limit, shape)
        out[name] = np.asarray(value, dtype=np.float32)
    return out


def _masked_mean(table: tf.Variable, ids: tf.Tensor) -> tf.Tensor:
    """Mean of the embeddings of the non-zero ids along the last axis."""
    vectors = tf.gather(table, ids)
    present = tf.cast(tf.not_equal(ids, 0), tf.float32)[..., None]
    count = tf.reduce_sum(present, axis=-2)
    return tf.reduce_sum(vectors * present, axis=-2) / tf.maximum(count, 1.0)


class InterestModel(tf.Module):  # type: ignore[misc]
    """The TensorFlow model of one :class:`ModelSpec`.

    Variables are created in :func:`weight_layout` order, so ``get_weights``
    is their concatenation. The ``tf.function`` methods are the export
    signatures; :meth:`train_step` is the same ``train`` for plain TF use.
    """

    def __init__(self, spec: ModelSpec, weights: Weights | None = None) -> None:
        super().__init__(name="vane_interest")
        self.spec = spec
        values = weights.named(spec) if weights is not None else initial_weights(spec)
        self.params = [
            tf.Variable(values[name], name=name.replace("/", "_"), dtype=tf.float32) for name, _ in weight_layout(spec)
        ]
        self.m_slots = [tf.Variable(tf.zeros_like(p), name="m_" + p.name.split(":")[0]) for p in self.params]
        self.v_slots = [tf.Variable(tf.zeros_like(p), name="v_" + p.name.split(":")[0]) for p in self.params]
        self.opt_step = tf.Variable(0.0, name="opt_step")
        self.step_counters: list[tf.Variable] = [self.opt_step]
        self._spec_bytes = np.frombuffer(spec_json(spec), dtype=np.uint8).copy()
        self._build_functions()
        if spec.has_ranker:
            add_ranker(self)

    # -- the network --------------------------------------------------------

    def _embed(self, cats: tf.Tensor, item: tf.Tensor, tokens: tf.Tensor, gap: tf.Tensor, kind: tf.Tensor,
               text: tf.Tensor | None = None) -> tf.Tensor:
        emb_cat, emb_item, emb_tok, emb_gap, emb_kind = self.params[:5]
        parts = [
            _masked_mean(emb_cat, cats),
            tf.gather(emb_item, item),
            _masked_mean(emb_tok, tokens),
            tf.gather(emb_gap, gap),
            tf.gather(emb_kind, kind),
        ]
        if text is not None:
            parts.append(project_text(text, *self.params[12:14]))
        return tf.concat(parts, axis=-1)

    def _cell(self, x_proj: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One LSTM step; ``x_proj`` already holds ``x @ kernel + bias``."""
        # split, not slicing: the gradient of a strided slice is no TFLite builtin
        z_i, z_f, z_g, z_o = tf.split(x_proj + tf.matmul(h, self.params[6]), 4, axis=1)
        c_new = tf.sigmoid(z_f) * c + tf.sigmoid(z_i) * tf.tanh(z_g)
        return tf.sigmoid(z_o) * tf.tanh(c_new), c_new

    def _heads(self, h: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Interest and intensity logits of hidden states shaped (N, U)."""
        interest = tf.matmul(h, self.params[8]) + self.params[9]
        intensity = tf.matmul(h, self.params[10]) + self.params[11]
        return interest, intensity

    def _unroll(
        self, inputs: tuple[tf.Tensor, ...], mask: tf.Tensor | None, h: tf.Tensor, c: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """Run the window; returns logits (B, T, C) twice and the last state."""
        spec = self.spec
        t_len, units = spec.window, spec.lstm_units
        x = self._embed(*inputs)  # (B, T, D)
        proj = tf.reshape(tf.matmul(tf.reshape(x, [-1, spec.input_dim]), self.params[5]), [-1, t_len, 4 * units])
        proj = proj + self.params[7]
        outputs = []
        for t, x_t in enumerate(tf.unstack(proj, num=t_len, axis=1)):
            h_new, c_new = self._cell(x_t, h, c)
            if mask is not None:
                m = mask[:, t : t + 1]
                h_new = m * h_new + (1.0 - m) * h
                c_new = m * c_new + (1.0 - m) * c
            h, c = h_new, c_new
            outputs.append(h)
        hs = tf.reshape(tf.stack(outputs, axis=1), [-1, units])
        interest, intensity = self._heads(hs)
        c_out = spec.num_categories
        return tf.reshape(interest, [-1, t_len, c_out]), tf.reshape(intensity, [-1, t_len, c_out]), h, c

    def _loss(
        self, logits: tuple[tf.Tensor, tf.Tensor], interest: tf.Tensor, intensity: tf.Tensor, weight: tf.Tensor
    ) -> tf.Tensor:
        interest_logits, intensity_logits = logits
        ce = -tf.reduce_sum(interest * tf.nn.log_softmax(interest_logits, axis=-1), axis=-1)
        bce = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=intensity, logits=intensity_logits), axis=-1
        )
        per_position = ce + self.spec.intensity_weight * bce
        return tf.reduce_sum(per_position * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)

    def _apply(self, grads: list[tf.Tensor], lr: tf.Tensor) -> None:
        """One optimizer step of the LSTM's arrays (the first ``len(grads)``; the ranker has its own)."""
        n = len(grads)
        if self.spec.optimizer == "sgd":
            for p, g in zip(self.params[:n], grads, strict=True):
                p.assign_sub(lr * g)
            return
        step = self.opt_step.assign_add(1.0)
        lr_t = lr * tf.sqrt(1.0 - tf.pow(_BETA2, step)) / (1.0 - tf.pow(_BETA1, step))
        for p, m, v, g in zip(self.params[:n], self.m_slots[:n], self.v_slots[:n], grads, strict=True):
            m_new = m.assign(_BETA1 * m + (1.0 - _BETA1) * g)
            v_new = v.assign(_BETA2 * v + (1.0 - _BETA2) * tf.square(g))
            p.assign_sub(lr_t * m_new / (tf.sqrt(v_new) + _EPSILON))

    # -- signatures ---------------------------------------------------------

    def _build_functions(self) -> None:
        spec = self.spec
        k, l_, t, u, c = (
            spec.max_categories_per_event,
            spec.tokens_per_title,
            spec.window,
            spec.lstm_units,
            spec.num_categories,
        )
        b = spec.batch
        i32, f32 = tf.int32, tf.float32
        S = tf.TensorSpec  # noqa: N806

        def infer(cats, item, tokens, gap, kind, mask, h0, c0, text=None):  # type: ignore[no-untyped-def]
            interest, intensity, h, c_ = self._unroll((cats, item, tokens, gap, kind, text), mask, h0, c0)
            return {"interest": tf.nn.softmax(interest), "intensity": tf.sigmoid(intensity), "h": h, "c": c_}

        def step(cats, item, tokens, gap, kind, h, c, text=None):  # type: ignore[no-untyped-def]
            x = self._embed(cats, item, tokens, gap, kind, text)
            h_new, c_new = self._cell(tf.matmul(x, self.params[5]) + self.params[7], h, c)
            interest, intensity = self._heads(h_new)
            return {"interest": tf.nn.softmax(interest), "intensity": tf.sigmoid(intensity), "h": h_new, "c": c_new}

        def train(cats, item, tokens, gap, kind, h0, c0, interest, intensity, weight, lr, text=None):  # type: ignore[no-untyped-def]
            with tf.GradientTape() as tape:
                logits_i, logits_n, _, _ = self._unroll((cats, item, tokens, gap, kind, text), None, h0, c0)
                loss = self._loss((logits_i, logits_n), interest, intensity, weight)
            grads = tape.gradient(loss, self.params[: len(lstm_layout(spec))])
            grads = [tf.convert_to_tensor(g) for g in grads]
            self._apply(grads, tf.reshape(lr, []))
            return {"loss": loss}

        def get_weights():  # type: ignore[no-untyped-def]
            return {"weights": tf.concat([tf.reshape(p, [-1]) for p in self.params], axis=0)}

        def set_weights(weights):  # type: ignore[no-untyped-def]
            offset = 0
            for p in self.params:
                size = int(np.prod(p.shape))
                p.assign(tf.reshape(weights[offset : offset + size], p.shape))
                offset += size
            return {"ok": tf.reduce_sum(weights[:1]) * 0.0 + 1.0}

        def reset_optimizer():  # type: ignore[no-untyped-def]
            # multiply, not zeros_like: a zeros constant per slot would be stored in the model file
            for slot in self.m_slots + self.v_slots:
                slot.assign(slot * 0.0)
            for counter in self.step_counters:
                counter.assign(0.0)
            return {"ok": tf.constant(1.0)}

        def spec_info():  # type: ignore[no-untyped-def]
            return {"spec_json": tf.constant(self._spec_bytes, dtype=tf.uint8)}

        n = sum(int(np.prod(shape)) for _, shape in weight_layout(spec))
        window = [S([None, t, k], i32), S([None, t], i32), S([None, t, l_], i32), S([None, t], i32), S([None, t], i32)]
        self.infer = tf.function(
            infer, input_signature=[*window, S([None, t], f32), S([None, u], f32), S([None, u], f32),
                                    *text_specs(spec, [None, t])]
        )
        self.step = tf.function(
            step,
            input_signature=[
                S([1, k], i32),
                S([1], i32),
                S([1, l_], i32),
                S([1], i32),
                S([1], i32),
                S([1, u], f32),
                S([1, u], f32),
                *text_specs(spec, [1]),
            ],
        )
        self.train = tf.function(
            train,
            input_signature=[
                S([b, t, k], i32),
                S([b, t], i32),
                S([b, t, l_], i32),
                S([b, t], i32),
                S([b, t], i32),
                S([b, u], f32),
                S([b, u], f32),
                S([b, t, c], f32),
                S([b, t, c], f32),
                S([b, t], f32),
                S([1], f32),
                *text_specs(spec, [b, t]),
            ],
        )
        self.get_weights = tf.function(get_weights, input_signature=[])
        self.set_weights = tf.function(set_weights, input_signature=[S([n], f32)])
        self.reset_optimizer = tf.function(reset_optimizer, input_signature=[])
        self.spec_info = tf.function(spec_info, input_signature=[])

    # -- plain TensorFlow use -----------------------------------------------

    def train_step(self, batch: TrainingBatch, lr: float | None = None) -> float:
        """One optimizer step on a full static batch; returns the loss."""
        rate = self.spec.learning_rate if lr is None else lr
        f = batch.features
        out = self.train(
            *_int32(f),
            _f32(batch.h0),
            _f32(batch.c0),
            _f32(batch.interest),
            _f32(batch.intensity),
            _f32(batch.weight),
            np.asarray([rate], np.float32),
            *text_array(self.spec, f),
        )
        return float(out["loss"].numpy())

    def predict(self, features: Features, mask: np.ndarray, h0: np.ndarray, c0: np.ndarray) -> dict[str, np.ndarray]:
        """``infer`` on (B, T, ...) features as numpy arrays."""
        out = self.infer(*_int32(features), _f32(mask), _f32(h0), _f32(c0), *text_array(self.spec, features))
        return {key: value.numpy() for key, value in out.items()}

    def weights(self) -> Weights:
        return Weights.from_flat(self.spec, self.get_weights()["weights"].numpy())

    def load_weights(self, weights: Weights) -> None:
        weights.check(self.spec)
        self.set_weights(_f32(weights.flat))

    def signatures(self, training: bool = True) -> dict[str, Any]:
        names = ["infer", "step", "spec_info"] + (["rank"] if self.spec.has_ranker else [])
        if training:
            names += ["train", "get_weights", "set_weights", "reset_optimizer"]
            names += ["train_ranker"] if self.spec.has_ranker else []
        return {name: getattr(self, name).get_concrete_function() for name in names}


def _int32(f: Features) -> list[np.ndarray]:
    return [np.asarray(getattr(f, name), dtype=np.int32) for name in Features.FIELDS]


def _f32(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def build_model(spec: ModelSpec, weights: Weights | None = None) -> InterestModel:
    """A fresh model for ``spec``, seeded with ``spec.seed`` unless ``weights`` are given."""
    return InterestModel(spec, weights)


def _as_model(model_or_spec: InterestModel | ModelSpec) -> InterestModel:
    return model_or_spec if isinstance(model_or_spec, InterestModel) else build_model(model_or_spec)


def _convert(model: InterestModel, training: bool, quantize: str | None) -> bytes:
    if quantize not in QUANTIZATIONS:
        raise ModelError(f"quantize is {quantize!r}; expected one of None, 'f16', 'int8'")
    signatures = model.signatures(training)
    with tempfile.TemporaryDirectory(prefix="vane-export-") as tmp:
        tf.saved_model.save(model, tmp, signatures=signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=list(signatures))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if training:
            converter.experimental_enable_resource_variables = True
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantize == "f16":
                converter.target_spec.supported_types = [tf.float16]
        blob: bytes = converter.convert()
    logger.info(
        "exported %s model of spec %s: %d bytes", "training" if training else "inference", model.spec.hash, len(blob)
    )
    return blob


def export_training_model(model_or_spec: InterestModel | ModelSpec, path: str | Path | None = None) -> bytes:
    """Convert to a LiteRT model with every signature; writes ``path`` if given."""
    blob = _convert(_as_model(model_or_spec), training=True, quantize=None)
    if path is not None:
        Path(path).write_bytes(blob)
    return blob


def export_inference_model(
    model_or_spec: InterestModel | ModelSpec, path: str | Path | None = None, quantize: str | None = None
) -> bytes:
    """Convert to an inference-only LiteRT model (``infer``, ``step``, ``spec_info``).

    Parameters
    ----------
    quantize : {None, "f16", "int8"}, default None
        ``"f16"`` stores float16 weights; ``"int8"`` is dynamic-range quantization.
    """
    blob = _convert(_as_model(model_or_spec), training=False, quantize=quantize)
    if path is not None:
        Path(path).write_bytes(blob)
    return blob
