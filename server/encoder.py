"""The text encoder (all-MiniLM-L6-v2) as a ``tf.Module`` over its pinned weights, and its LiteRT export.

No Keras, transformers or torch: the BERT forward pass is written here over constants read from the
safetensors file (:mod:`vane.server.encoder_weights`):

- embeddings: word + position + token type 0, LayerNorm (eps 1e-12);
- 6 layers of 12-head self-attention over 384 dimensions (padding keys masked), residual + LayerNorm,
  a 1536-wide feed-forward with the exact (erf) GELU, residual + LayerNorm;
- mean pooling over the attention mask, then L2 normalisation.

Signature ``embed(input_ids int32[B, L], attention_mask int32[B, L]) -> {"embedding": float32[B, 384]}``
with dynamic ``B`` and ``L``, converted with ``TFLITE_BUILTINS`` only. ``quantize``: ``"int8"``
(dynamic-range: int8 weights, float activations), ``"f16"`` (float16 weights) or ``"none"``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from vane.server.encoder_weights import WEIGHTS_SHA256, load_pinned
from vane.shared.encoder_artifact import DIMS, EncoderArtifact
from vane.shared.errors import ModelError
from vane.shared.wordpiece import WordPiece

logger = logging.getLogger("vane.server")

QUANTIZATIONS = ("int8", "f16", "none")
LAYERS, HEADS, HIDDEN = 6, 12, DIMS
_EPS = 1e-12
#: Fixed titles the parity check embeds with the TensorFlow module and the LiteRT file.
PARITY_TITLES = (
    "Stocks rally as the Fed holds interest rates steady",
    "Lakers beat the Celtics in overtime thriller",
    "How to make sourdough bread at home",
    "NASA's Artemis mission delays moon landing to 2027",
    "Best budget laptops for students this year",
    "Taylor Swift announces new world tour dates",
    "Climate summit ends with a deal on coal",
    "10 easy weeknight pasta recipes",
    "Python 3.12 released: faster, with better error messages",
    "Café crème brûlée: a French dessert guide",
    "東京の天気予報",
    "Why sleep matters for your immune system",
    "Review: the new electric SUV is quick and quiet",
    "Elections 2024: what the polls say in swing states",
    "Champions League final: Real Madrid wins again",
    "A beginner's guide to index funds and ETFs",
    "github.com torvalds linux pull request",
    "Mortgage rates hit a 20-year high",
    "The Mediterranean diet and heart health",
    "New Zelda game breaks sales records",
)


def _row_scaled(weights: dict[str, np.ndarray], name: str) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """A dense layer as ``(w / s, s, bias)`` with ``s`` each output row's largest ``|w|``.

    The int8 export quantizes dense weights per tensor (per-channel makes FULLY_CONNECTED op version
    12, which tflite-runtime 2.14 refuses); with every row scaled to the same range, per-tensor is as
    fine as per-channel, and the scale comes back as one multiply on the layer's output.
    """
    try:
        w = np.asarray(weights[name + ".weight"], dtype=np.float32)
        b = np.asarray(weights[name + ".bias"], dtype=np.float32)
    except KeyError as exc:
        raise ModelError(f"the encoder weights lack the tensor {exc.args[0]!r}") from None
    scale = np.maximum(np.abs(w).max(axis=1), 1e-12).astype(np.float32)
    return tf.constant(w / scale[:, None]), tf.constant(scale), tf.constant(b)


class TextEncoderModule(tf.Module):
    """The MiniLM sentence encoder over fixed weights (name → array, as in the safetensors file)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__(name="text_encoder")

        def const(name: str) -> tf.Tensor:
            try:
                return tf.constant(np.asarray(weights[name], dtype=np.float32))
            except KeyError:
                raise ModelError(f"the encoder weights lack the tensor {name!r}") from None

        e = "embeddings."
        self.word = const(e + "word_embeddings.weight")
        self.position = const(e + "position_embeddings.weight")
        self.type0 = tf.constant(np.asarray(weights[e + "token_type_embeddings.weight"][0], dtype=np.float32))
        self.emb_norm = (const(e + "LayerNorm.weight"), const(e + "LayerNorm.bias"))
        self.layers: list[dict[str, tuple[tf.Tensor, ...]]] = []
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            layer: dict[str, tuple[tf.Tensor, ...]] = {
                key: (const(p + name + ".weight"), const(p + name + ".bias"))
                for key, name in (("ln1", "attention.output.LayerNorm"), ("ln2", "output.LayerNorm"))}
            for key, name in (("q", "attention.self.query"), ("k", "attention.self.key"),
                              ("v", "attention.self.value"), ("o", "attention.output.dense"),
                              ("up", "intermediate.dense"), ("down", "output.dense")):
                layer[key] = _row_scaled(weights, p + name)
            self.layers.append(layer)
        self.max_positions = int(self.position.shape[0])

    @staticmethod
    def _norm(x: tf.Tensor, gb: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        var = tf.reduce_mean(tf.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + _EPS) * gb[0] + gb[1]

    @staticmethod
    def _dense(x2: tf.Tensor, wsb: tuple[tf.Tensor, ...]) -> tf.Tensor:
        # x2 is [N, in]; the weight is [out, in] (a FULLY_CONNECTED in LiteRT), each row scaled to max |w| = 1
        # the scale is applied to a [N, 1, out] view so the converter does not fold it back into the weights
        y = tf.expand_dims(tf.matmul(x2, wsb[0], transpose_b=True), 1)
        return tf.squeeze(y * wsb[1], 1) + wsb[2]

    def forward(self, input_ids: tf.Tensor, attention_mask: tf.Tensor) -> tf.Tensor:
        batch, length = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        mask = tf.cast(attention_mask, tf.float32)
        positions = tf.expand_dims(tf.slice(self.position, [0, 0], [length, HIDDEN]), 0)
        x = tf.gather(self.word, input_ids) + positions + self.type0
        x = tf.reshape(self._norm(x, self.emb_norm), [-1, HIDDEN])  # [B*L, H]
        head = HIDDEN // HEADS
        bias = tf.reshape((1.0 - mask) * -1e9, [batch, 1, 1, length])  # padding keys get no weight

        def heads(t: tf.Tensor) -> tf.Tensor:
            return tf.transpose(tf.reshape(t, [batch, length, HEADS, head]), [0, 2, 1, 3])

        for layer in self.layers:
            q = heads(self._dense(x, layer["q"]) * (1.0 / float(np.sqrt(head))))
            k, v = heads(self._dense(x, layer["k"])), heads(self._dense(x, layer["v"]))
            probs = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) + bias, axis=-1)
            ctx = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [-1, HIDDEN])
            x = self._norm(x + self._dense(ctx, layer["o"]), layer["ln1"])
            up = tf.nn.gelu(self._dense(x, layer["up"]), approximate=False)
            x = self._norm(x + self._dense(up, layer["down"]), layer["ln2"])
        hidden = tf.reshape(x, [batch, length, HIDDEN])
        summed = tf.reduce_sum(hidden * tf.expand_dims(mask, -1), axis=1)
        pooled = summed / tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1e-9)
        norm = tf.sqrt(tf.reduce_sum(tf.square(pooled), axis=1, keepdims=True))
        return pooled / tf.maximum(norm, _EPS)

    @tf.function(input_signature=[  # type: ignore[untyped-decorator]
        tf.TensorSpec([None, None], tf.int32, name="input_ids"),
        tf.TensorSpec([None, None], tf.int32, name="attention_mask"),
    ])
    def embed(self, input_ids: tf.Tensor, attention_mask: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"embedding": self.forward(input_ids, attention_mask)}


def convert(module: TextEncoderModule, quantize: str = "int8") -> bytes:
    """The module's ``embed`` as LiteRT bytes (builtins only)."""
    if quantize not in QUANTIZATIONS:
        raise ModelError(f"quantize is {quantize!r}; expected one of {', '.join(QUANTIZATIONS)}")
    with tempfile.TemporaryDirectory(prefix="vane-encoder-") as tmp:
        tf.saved_model.save(module, tmp, signatures={"embed": module.embed})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["embed"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantize == "f16":
                converter.target_spec.supported_types = [tf.float16]
            else:
                # per-tensor int8 weights keep FULLY_CONNECTED at op version 9, which tflite-runtime 2.14 runs
                # (per-channel makes it version 12, refused there); parity stays above 0.99 (see the exporter)
                converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        blob: bytes = converter.convert()
    return blob


@dataclass(frozen=True)
class Parity:
    """Cosine of the LiteRT embeddings to the TensorFlow module's on :data:`PARITY_TITLES`."""

    min_cosine: float
    mean_cosine: float
    titles: int


def parity(module: TextEncoderModule, artifact: EncoderArtifact, titles: Sequence[str] = PARITY_TITLES) -> Parity:
    """Embed ``titles`` with both and compare, one title at a time (the device's ``record()`` path)."""
    from ai_edge_litert.interpreter import Interpreter

    tokenizer = WordPiece.from_bytes(artifact.vocab, artifact.max_len)
    runner = Interpreter(model_content=artifact.tflite, num_threads=1).get_signature_runner("embed")
    cosines = []
    for title in titles:
        ids, mask = tokenizer.encode_batch([title])
        want = module.embed(tf.constant(ids), tf.constant(mask))["embedding"].numpy()[0]
        got = np.asarray(runner(input_ids=ids, attention_mask=mask)["embedding"])[0]
        cosines.append(float(np.dot(want, got) / (np.linalg.norm(want) * np.linalg.norm(got))))
    return Parity(min(cosines), float(np.mean(cosines)), len(cosines))


@dataclass(frozen=True)
class EncoderBuild:
    artifact: EncoderArtifact
    module: TextEncoderModule
    seconds: float


def build_encoder(quantize: str = "int8", max_len: int = 128) -> EncoderBuild:
    """Read and check the pinned weights, convert, and wrap the result as an :class:`EncoderArtifact`."""
    start = time.perf_counter()
    weights, vocab = load_pinned()
    module = TextEncoderModule(weights)
    if max_len > module.max_positions:
        raise ModelError(f"max_len is {max_len}; the encoder has {module.max_positions} positions")
    blob = convert(module, quantize)
    artifact = EncoderArtifact.build(blob, vocab, quantize, max_len, source_sha256=WEIGHTS_SHA256)
    logger.info("exported encoder %s: %d bytes", artifact.version, len(blob))
    return EncoderBuild(artifact, module, time.perf_counter() - start)
