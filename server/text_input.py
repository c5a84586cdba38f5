"""The interest model's text input: each event's embedding through a trainable projection.

With ``spec.text_dim`` the event's text embedding (384 floats from the MiniLM encoder, zeros for an
event without a title) is projected to ``spec.text_proj`` values, ``tanh(x @ text/kernel + text/bias)``,
and concatenated to the other embeddings of the LSTM input. The projection is two plain matrix ops,
so the ``train`` signature's gradients stay TFLite builtins. A spec without ``text_dim`` has none of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from vane.shared.features import Features
from vane.shared.spec import ModelSpec

__all__ = ["project_text", "text_array", "text_specs"]


def project_text(text: tf.Tensor, kernel: tf.Variable, bias: tf.Variable) -> tf.Tensor:
    """The projected embeddings: ``(1, D)`` gives ``(1, P)``, a window ``(B, T, D)`` gives ``(B, T, P)``."""
    dims, width = kernel.shape
    if text.shape.rank == 2:
        return tf.tanh(tf.matmul(text, kernel) + bias)
    steps = text.shape[1]
    flat = tf.matmul(tf.reshape(text, [-1, dims]), kernel)  # 2-D matmul: its gradient is builtins only
    return tf.tanh(tf.reshape(flat, [-1, steps, width]) + bias)


def text_specs(spec: ModelSpec, leading: list[Any]) -> list[tf.TensorSpec]:
    """The ``text`` input of a signature whose other inputs lead with ``leading``; none without text."""
    return [tf.TensorSpec([*leading, spec.text_dim], tf.float32)] if spec.text_dim else []


def text_array(spec: ModelSpec, features: Features) -> list[np.ndarray]:
    """``features``' text as the last positional argument of a signature (zeros when they carry none)."""
    if not spec.text_dim:
        return []
    if features.text is None:
        return [np.zeros((*np.shape(features.item), spec.text_dim), np.float32)]
    return [np.asarray(features.text, np.float32)]
