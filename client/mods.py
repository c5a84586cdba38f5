"""Privacy mods around the ClientApp: clipping for DP, and SecAgg+ masking.

Both are inert unless the server's message asks for them, so every ClientApp
carries them (:func:`privacy_mods`); the training code never sees them.

``delta_clipping_mod``
    When a train message's config holds Flower's ``clipping_norm`` (sent by
    the client-side DP strategy wrappers), scale the reply's ``delta`` to
    that L2 norm and report ``norm_bit`` (1 when it was clipped), which the
    adaptive-clipping wrapper reads. Flower's own ``fixedclipping_mod`` clips
    ``reply - global weights``; Vane replies with the delta itself, so the
    origin is zero.

``secure_aggregation_mod``
    Vane's answer to the legacy SecAgg+ workflow
    (:mod:`vane.server.privacy.secagg`). Legacy messages (``fitins.*`` /
    ``evaluateins.*``) are translated by the ``flwr.compat`` record converters
    into the Message-API form the ClientApp speaks, and replies back into
    ``fitres`` / ``evaluateres``. Train messages that carry
    ``secaggplus_configs`` pass through Flower's ``secaggplus_mod``, which
    masks the reply. Before masking the delta is clipped element-wise to the
    SecAgg+ ``clipping_range`` (the quantiser would clip anyway; doing it here
    makes the aggregate exactly FedAvg of the clipped deltas) and
    ``num-examples`` is capped at ``max_weight`` so that the weighted value
    stays in range. When the server also asks for DP clipping, the L2 clip
    leaves room for SecAgg+'s rounding and every delta gets the full weight,
    so the unmasked aggregate is the plain mean the server's noise is
    calibrated to.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.common import Code, EvaluateRes, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.constant import ErrorCode
from flwr.compat.common import recorddict_compat as compat
from vane.shared.errors import MessageError, VaneError
from vane.shared.protocol import (
    ARRAYS_RECORD,
    CLIPPING_NORM_KEY,
    CONFIG_RECORD,
    DELTA_KEY,
    LEGACY_EVALUATE_PARAMETERS,
    LEGACY_FIT_PARAMETERS,
    NDCG10_KEY,
    NORM_BIT_KEY,
    NUM_EXAMPLES_KEY,
    SECAGG_CONFIGS_RECORD,
    SECAGG_STATE_RECORD,
    WEIGHTS_KEY,
)


def error_reply(msg: Message, exc: VaneError) -> Message:
    """The reply to ``msg`` that refuses it: a Flower :class:`~flwr.app.Error` naming ``exc``'s class and message.

    The server sees ``reply.has_error()`` and ``reply.error.reason``; no content goes back.
    """
    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=f"{type(exc).__name__}: {exc}"),
                   reply_to=msg)


def clipping_norm(config: ConfigRecord) -> float | None:
    """The ``clipping_norm`` the server sent (None when it asks for no clipping); a positive finite number."""
    norm = config.get(CLIPPING_NORM_KEY)
    if norm is None:
        return None
    if isinstance(norm, bool) or not isinstance(norm, (int, float)) or not math.isfinite(norm) or norm <= 0:
        raise MessageError(f"{CLIPPING_NORM_KEY} is {norm!r}; expected a positive finite number")
    return float(norm)


def clip_l2(delta: np.ndarray, norm: float) -> tuple[np.ndarray, bool]:
    """``delta`` scaled to L2 norm at most ``norm``; and whether it was scaled."""
    current = float(np.linalg.norm(delta.astype(np.float64)))
    if current <= norm or current == 0.0:
        return delta, False
    return (delta * (norm / current)).astype(delta.dtype), True


def delta_clipping_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Clip the reply's ``delta`` to the ``clipping_norm`` the server sent (client-side DP)."""
    if msg.metadata.message_type != "train" or not msg.has_content() or CONFIG_RECORD not in msg.content.config_records:
        return call_next(msg, context)
    try:
        norm = clipping_norm(msg.content.config_records[CONFIG_RECORD])
    except MessageError as exc:
        return error_reply(msg, exc)
    reply = call_next(msg, context)
    if norm is None or not reply.has_content() or ARRAYS_RECORD not in reply.content.array_records:
        return reply
    arrays = reply.content.array_records[ARRAYS_RECORD]
    delta = arrays[DELTA_KEY].numpy()
    delta, clipped = clip_l2(delta, norm - _rounding_slack(context, delta.size, norm))
    reply.content[ARRAYS_RECORD] = ArrayRecord({DELTA_KEY: Array(delta)})
    for metrics in reply.content.metric_records.values():
        metrics[NORM_BIT_KEY] = float(clipped)
    return reply


# --- SecAg+ over the legacy workflow ------------------------------------------
def _legacy_kind(content: RecordDict) -> str | None:
    if LEGACY_FIT_PARAMETERS in content.array_records:
        return "fit"
    if LEGACY_EVALUATE_PARAMETERS in content.array_records:
        return "evaluate"
    return None


def _secagg_limits(context: Context) -> tuple[float, float]:
    """(clipping_range, max_weight) that ``secaggplus_mod`` stored at its setup stage."""
    state = context.state.config_records.get(SECAGG_STATE_RECORD)
    if state is None:
        return np.inf, np.inf
    return float(state.get("clipping_range", np.inf)), float(state.get("max_weight", np.inf))  # type: ignore[arg-type]


def _rounding_slack(context: Context, size: int, norm: float) -> float:
    """How far SecAgg+'s stochastic rounding can move a delta in L2 (0 outside SecAgg+).

    Each coordinate moves by less than one grid step ``2·clipping_range/target_range``, so a delta
    clipped to ``norm - √size·step`` stays within ``norm`` after quantisation: the DP sensitivity holds.
    """
    state = context.state.config_records.get(SECAGG_STATE_RECORD)
    if state is None or not state.get("target_range"):
        return 0.0
    step = 2.0 * float(state["clipping_range"]) / float(state["target_range"])  # type: ignore[arg-type]
    slack = math.sqrt(size) * step
    if slack >= norm:
        raise ValueError(
            f"clipping_norm {norm} is within SecAgg+'s rounding slack {slack:.3g} for {size} coordinates; "
            "expected a larger clipping-norm or secagg-quantization-range"
        )
    return slack


def _legacy_to_message_api(msg: Message, kind: str) -> None:
    ins: Any = (
        compat.recorddict_to_fitins(msg.content, keep_input=True)
        if kind == "fit"
        else compat.recorddict_to_evaluateins(msg.content, keep_input=True)
    )
    arrays = parameters_to_ndarrays(ins.parameters)
    if len(arrays) != 1:
        raise MessageError(f"the legacy {kind} message holds {len(arrays)} arrays; expected the one weight vector")
    flat = np.asarray(arrays[0])  # as sent: the ClientApp refuses anything but float32, nothing is converted
    msg.content = RecordDict({ARRAYS_RECORD: ArrayRecord({WEIGHTS_KEY: Array(flat)}),
                              CONFIG_RECORD: ConfigRecord(ins.config)})


def _metrics_of(reply: Message) -> dict[str, float]:
    record: MetricRecord = next(iter(reply.content.metric_records.values()))
    return {k: float(v) for k, v in record.items() if not isinstance(v, list)}


def _fit_reply(reply: Message, context: Context, equal_weight: bool) -> None:
    clipping_range, max_weight = _secagg_limits(context)
    delta = reply.content.array_records[ARRAYS_RECORD][DELTA_KEY].numpy().astype(np.float32)
    delta = np.clip(delta, -clipping_range, clipping_range)
    metrics = _metrics_of(reply)
    num_examples = int(min(metrics.pop(NUM_EXAMPLES_KEY), max_weight))
    if equal_weight and math.isfinite(max_weight):
        # Under DP every clipped delta counts the same (the noise is calibrated to a plain mean); the
        # full weight keeps the SecAgg+ ratio at 1, so the rounding grid is not stretched.
        num_examples = int(max_weight)
    res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([delta]), num_examples, metrics)  # type: ignore[arg-type]
    reply.content = compat.fitres_to_recorddict(res, keep_input=False)


def _evaluate_reply(reply: Message) -> None:
    metrics = _metrics_of(reply)
    num_examples = int(metrics.pop(NUM_EXAMPLES_KEY))
    loss = 1.0 - metrics.get(NDCG10_KEY, 0.0)
    res = EvaluateRes(Status(Code.OK, ""), loss, num_examples, metrics)  # type: ignore[arg-type]
    reply.content = compat.evaluateres_to_recorddict(res)


def _legacy_adapter(call_next: ClientAppCallable) -> ClientAppCallable:
    """Wrap the ClientApp so that it answers legacy fit/evaluate messages."""

    def call(msg: Message, context: Context) -> Message:
        kind = _legacy_kind(msg.content) if msg.has_content() else None
        if kind is None:
            return call_next(msg, context)
        try:
            _legacy_to_message_api(msg, kind)
        except MessageError as exc:
            return error_reply(msg, exc)
        clipped = CLIPPING_NORM_KEY in msg.content.config_records[CONFIG_RECORD]
        reply = call_next(msg, context)
        if reply.has_content():
            _fit_reply(reply, context, clipped) if kind == "fit" else _evaluate_reply(reply)
        return reply

    return call


def secure_aggregation_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """SecAgg+ masking (Flower's ``secaggplus_mod``) for legacy-workflow messages; a no-op otherwise."""
    adapted = _legacy_adapter(call_next)
    if msg.has_content() and SECAGG_CONFIGS_RECORD in msg.content.config_records:
        return secaggplus_mod(msg, context, _raising_errors(adapted))
    return adapted(msg, context)


def _raising_errors(call_next: ClientAppCallable) -> ClientAppCallable:
    """Inside ``secaggplus_mod`` (which reads the reply's content) an error reply becomes a raised MessageError.

    Flower turns it into an error reply to the SecAgg+ workflow, which drops the node from the round.
    """

    def call(msg: Message, context: Context) -> Message:
        reply = call_next(msg, context)
        if reply.has_error():
            raise MessageError(f"the ClientApp refused the message: {reply.error.reason}")
        return reply

    return call


def privacy_mods() -> list[Mod]:
    """The mods every Vane ClientApp carries, outermost first: SecAgg+ masks what clipping produced."""
    return [secure_aggregation_mod, delta_clipping_mod]
