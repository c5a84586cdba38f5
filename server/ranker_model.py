"""The candidate ranker inside the interest model: its network, loss and LiteRT signatures.

A model whose spec has ``ranker_units > 0`` carries, after the LSTM's arrays, a two-layer MLP (SiLU) that reads
each candidate's features (:data:`vane.shared.candidates.FIELDS`, divided by the fixed
:data:`vane.shared.ranker_data.FEATURE_SCALE`) and gives two numbers per candidate: a next-category score
(a softmax over the query's candidates) and a next-window intensity logit. Its loss is listwise: the
negative log-softmax over the real candidates summed over the next event's categories, plus
``spec.intensity_weight`` times the candidates' mean binary cross-entropy against "occurs in the next
``intensity_horizon`` events".

Signatures, TFLite builtins only:

``rank``          ``features (B, C, F)``, ``mask (B, C)`` → ``score`` (masked logits) and ``intensity`` (B, C)
``train_ranker``  one Adam step of the ranker's arrays at the static batch ``spec.ranker_batch``
                  (its own step counter; ``reset_optimizer`` zeroes it too)

The ranker shares the model's weight vector, so the federation (strategies, SecAgg+, DP) ships it with
the LSTM unchanged.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import tensorflow as tf
from vane.shared.ranker_data import FEATURE_SCALE, RankerExamples
from vane.shared.spec import ModelSpec
from vane.shared.weights import lstm_layout


class InterestModel(Protocol):
    """What the ranker needs of :class:`vane.server.model.InterestModel` (no import: that module imports this one)."""

    spec: ModelSpec
    params: list[tf.Variable]
    m_slots: list[tf.Variable]
    v_slots: list[tf.Variable]
    step_counters: list[tf.Variable]
    ranker_step: tf.Variable
    rank: Any
    train_ranker: Any

_BETA1, _BETA2, _EPSILON = 0.9, 0.999, 1e-7
_MASKED = -1e9


def _silu(x: tf.Tensor) -> tf.Tensor:
    """x * sigmoid(x), written out: ReLU's gradient op (ReluGrad) is no TFLite builtin."""
    return x * tf.sigmoid(x)


def ranker_outputs(model: InterestModel, features: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Masked next-category logits and intensity logits, (B, C) each."""
    spec = model.spec
    w1, b1, w2, b2, w3, b3 = model.params[len(lstm_layout(spec)):]
    x = tf.reshape(features * tf.constant(1.0 / FEATURE_SCALE), [-1, spec.ranker_features])
    h = _silu(tf.matmul(x, w1) + b1)
    h = _silu(tf.matmul(h, w2) + b2)
    # The score's bias is held at 0: a softmax over candidates ignores it, so its gradient is round-off
    # alone, which Adam would amplify into noise that differs between TensorFlow and LiteRT.
    out = tf.matmul(h, w3) + b3 * tf.constant([0.0, 1.0])
    score, intensity = tf.split(out, 2, axis=1)
    score = tf.reshape(score, [-1, spec.ranker_candidates])
    intensity = tf.reshape(intensity, [-1, spec.ranker_candidates])
    return score + (1.0 - mask) * _MASKED, intensity


def ranker_loss(model: InterestModel, features: tf.Tensor, mask: tf.Tensor, target: tf.Tensor, future: tf.Tensor,
                weight: tf.Tensor) -> tf.Tensor:
    """Weighted mean over queries of the listwise cross-entropy plus the intensity loss."""
    score, intensity = ranker_outputs(model, features, mask)
    ce = -tf.reduce_sum(target * tf.nn.log_softmax(score, axis=-1), axis=-1)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=future, logits=intensity) * mask
    bce = tf.reduce_sum(bce, axis=-1) / tf.maximum(tf.reduce_sum(mask, axis=-1), 1.0)
    per_query = ce + model.spec.intensity_weight * bce
    return tf.reduce_sum(per_query * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)


def add_ranker(model: InterestModel) -> None:
    """Give ``model`` the ``rank`` and ``train_ranker`` functions (its spec has a ranker)."""
    spec = model.spec
    first = len(lstm_layout(spec))
    params = model.params[first:]
    m_slots, v_slots = model.m_slots[first:], model.v_slots[first:]
    model.ranker_step = tf.Variable(0.0, name="ranker_step")
    model.step_counters.append(model.ranker_step)
    c, f, b = spec.ranker_candidates, spec.ranker_features, spec.ranker_batch
    S = tf.TensorSpec  # noqa: N806

    def rank(features, mask):  # type: ignore[no-untyped-def]
        score, intensity = ranker_outputs(model, features, mask)
        return {"score": score, "intensity": tf.sigmoid(intensity)}

    def train_ranker(features, mask, target, future, weight, lr):  # type: ignore[no-untyped-def]
        with tf.GradientTape() as tape:
            loss = ranker_loss(model, features, mask, target, future, weight)
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, params)]
        step = model.ranker_step.assign_add(1.0)
        rate = tf.reshape(lr, []) * tf.sqrt(1.0 - tf.pow(_BETA2, step)) / (1.0 - tf.pow(_BETA1, step))
        for p, m, v, g in zip(params, m_slots, v_slots, grads, strict=True):
            m_new = m.assign(_BETA1 * m + (1.0 - _BETA1) * g)
            v_new = v.assign(_BETA2 * v + (1.0 - _BETA2) * tf.square(g))
            p.assign_sub(rate * m_new / (tf.sqrt(v_new) + _EPSILON))
        return {"loss": loss}

    model.rank = tf.function(rank, input_signature=[S([None, c, f], tf.float32), S([None, c], tf.float32)])
    model.train_ranker = tf.function(train_ranker, input_signature=[
        S([b, c, f], tf.float32), S([b, c], tf.float32), S([b, c], tf.float32), S([b, c], tf.float32),
        S([b], tf.float32), S([1], tf.float32)])


def pad_examples(examples: RankerExamples, batch: int) -> tuple[RankerExamples, np.ndarray]:
    """``examples`` padded with empty queries to ``batch`` rows, and the per-query weights (0 for padding)."""
    n = len(examples)
    if n > batch:
        raise ValueError(f"{n} ranker queries; the batch takes at most {batch}")
    weight = np.zeros(batch, np.float32)
    weight[:n] = 1.0
    if n == batch:
        return examples, weight

    def grow(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.zeros((batch - n, *a.shape[1:]), a.dtype)])

    return RankerExamples(grow(examples.features), grow(examples.mask), grow(examples.target),
                          grow(examples.future)), weight


def train_ranker_step(model: InterestModel, examples: RankerExamples, lr: float) -> float:
    """One ``train_ranker`` step in plain TensorFlow on at most ``spec.ranker_batch`` queries; the loss."""
    padded, weight = pad_examples(examples, model.spec.ranker_batch)
    out = model.train_ranker(padded.features, padded.mask, padded.target, padded.future, weight,
                             np.asarray([lr], np.float32))
    return float(out["loss"].numpy())


def rank_scores(model: InterestModel, features: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """``rank`` in plain TensorFlow: masked scores and intensities as numpy arrays."""
    out = model.rank(np.asarray(features, np.float32), np.asarray(mask, np.float32))
    return {key: value.numpy() for key, value in out.items()}
