"""Fine-tuning with masks enforced, and the full-int8 TFLite export with its sparsity check.

TensorFlow / Keras are imported only inside these functions.
"""

from __future__ import annotations

import math
import tempfile

import numpy as np

from ..errors import DTMMError


class TrainingError(DTMMError):
    """Training diverged (NaN loss) or could not run."""


class ExportError(DTMMError):
    """The int8 export lost sparsity or kept a removed filter."""


def polynomial_ratio(final: float, epoch: int, ramp_epochs: int, power: int = 3) -> float:
    """tfmot's polynomial decay schedule: the ratio after ``epoch`` (0-based) of ``ramp_epochs``."""
    if ramp_epochs <= 0:
        return final
    t = min(1.0, (epoch + 1) / ramp_epochs)
    return final * (1.0 - (1.0 - t) ** power)


def ends_in_softmax(model) -> bool:
    from .keras_adapter import _ends_in_softmax

    return _ends_in_softmax(model)


def accuracy(model, x, y, batch: int = 512) -> float:
    pred = model.predict(x, batch_size=batch, verbose=0)
    return float(np.mean(np.argmax(pred, axis=1) == y))


def distillation_loss(from_logits: bool, alpha: float, temperature: float):
    """Hinton et al.'s knowledge distillation: ``(1 - alpha) * CE(label) + alpha * T^2 *
    KL(teacher_T || student_T)``. ``y_true`` rows are ``[label, teacher soft targets at T...]``
    (see :func:`teacher_targets`); a model ending in softmax gives probabilities, whose logs
    are its logits up to a constant (softmax is shift-invariant)."""
    from keras import ops

    def loss(y_true, y_pred):
        labels = ops.cast(y_true[:, 0], "int32")
        soft = y_true[:, 1:]
        logits = y_pred if from_logits else ops.log(ops.clip(y_pred, 1e-7, 1.0))
        log_student = ops.log_softmax(logits, axis=-1)
        ce = -ops.sum(ops.one_hot(labels, ops.shape(logits)[-1]) * log_student, axis=-1)
        log_student_t = ops.log_softmax(logits / temperature, axis=-1)
        kl = ops.sum(soft * (ops.log(ops.clip(soft, 1e-12, 1.0)) - log_student_t), axis=-1)
        return (1.0 - alpha) * ce + alpha * temperature * temperature * kl

    return loss


def teacher_targets(teacher, x, temperature: float, from_logits: bool, batch: int = 512) -> np.ndarray:
    """The teacher's softened class probabilities ``softmax(logits / T)`` for ``x``."""
    out = teacher.predict(x, batch_size=batch, verbose=0).astype(np.float64)
    logits = out if from_logits else np.log(np.clip(out, 1e-7, 1.0))
    z = logits / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def finetune(model, data, masks_at, *, epochs: int = 3, schedule: str = "oneshot", lr: float = 1e-3,
             batch: int = 64, progress=None, seed: int = 0, teacher=None, distill: float = 0.0,
             temperature: float = 4.0):
    """Fine-tune ``model`` in place with filterlet masks enforced after every step.

    ``masks_at(fraction)`` returns ``{layer: kernel mask}`` for ``fraction`` of the final
    filterlet ratios (1.0 = final). ``schedule`` "oneshot" applies the final masks from the
    start; "gradual" raises them each epoch along tfmot's polynomial schedule, reaching the final
    masks after two thirds of the epochs. Adam with cosine learning-rate decay; the weights with
    the best validation accuracy (among epochs at the final masks) are kept. Returns the history
    ``[{epoch, fraction, loss, val_accuracy}]``. A NaN loss raises :class:`TrainingError`.
    With ``teacher`` (the unpruned model) and ``distill`` > 0, the loss mixes the labels' cross
    entropy with the teacher's softened outputs at ``temperature`` (:func:`distillation_loss`).
    """
    import keras

    from .keras_adapter import mask_enforcer

    keras.utils.set_random_seed(seed)
    steps = max(1, epochs * math.ceil(len(data.x_train) / batch))
    from_logits = not ends_in_softmax(model)
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.05))
    y_fit = data.y_train
    if teacher is not None and distill > 0:
        if not 0 < distill <= 1 or temperature <= 0:
            raise DTMMError(f"distillation weight {distill} must be in (0, 1] and temperature {temperature} > 0")
        soft = teacher_targets(teacher, data.x_train, temperature, not ends_in_softmax(teacher))
        y_fit = np.concatenate([np.asarray(data.y_train, np.float32)[:, None], soft], axis=1)
        model.compile(optimizer=optimizer, loss=distillation_loss(from_logits, distill, temperature))
    else:
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
                      metrics=["accuracy"])
    ramp = max(1, (2 * epochs) // 3) if schedule == "gradual" else 0
    if schedule not in ("oneshot", "gradual"):
        raise DTMMError(f"unknown schedule '{schedule}': oneshot or gradual")
    history = []
    best_acc, best_weights = -1.0, None
    enforcer = mask_enforcer(masks_at(1.0 if ramp == 0 else polynomial_ratio(1.0, 0, ramp)))
    enforcer.install(model)
    for epoch in range(max(epochs, 0)):
        fraction = 1.0 if ramp == 0 else polynomial_ratio(1.0, epoch, ramp)
        enforcer.masks = masks_at(fraction)
        hist = model.fit(data.x_train, y_fit, batch_size=batch, epochs=1, verbose=0,
                         callbacks=[enforcer, keras.callbacks.TerminateOnNaN()], shuffle=True)
        loss = float(hist.history["loss"][-1])
        if not np.isfinite(loss):
            raise TrainingError(f"the loss became {loss} in fine-tuning epoch {epoch + 1}; lower --lr "
                                f"(now {lr}) or check the data (nothing was written)")
        val = accuracy(model, data.x_val, data.y_val)
        history.append({"epoch": epoch + 1, "fraction": round(fraction, 4), "loss": round(loss, 5),
                        "val_accuracy": round(val, 5)})
        if fraction >= 1.0 and val > best_acc:
            best_acc, best_weights = val, model.get_weights()
        if progress:
            progress(history[-1])
    enforcer.uninstall()
    if best_weights is not None:
        model.set_weights(best_weights)
    # Re-apply the final masks (set_weights restored a snapshot taken right after a masked step).
    final = masks_at(1.0)
    for name, mask in final.items():
        layer = model.get_layer(name)
        layer.kernel.assign(layer.kernel.numpy() * mask)
    return history


def export_int8(model, representative: np.ndarray) -> bytes:
    """Full-int8 TFLite: per-channel weights, int8 input and output, batch fixed to 1,
    ``representative`` float examples calibrating the activations."""
    import tensorflow as tf

    shape = [1, *[int(d) for d in model.inputs[0].shape[1:]]]
    with tempfile.TemporaryDirectory(prefix="dtmm-export-") as d:
        model.export(d, input_signature=[tf.TensorSpec(shape, tf.float32)], verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(d)

        def rep():
            for i in range(len(representative)):
                yield [representative[i:i + 1].astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        return conv.convert()


def check_export(tflite_bytes: bytes, convs: list) -> list:
    """Check the int8 file against the pruned Keras convs, in graph order.

    ``convs``: ``[(name, filters_kept, filters_total, keep (Cout_kept, KH, KW) or None)]``.
    Every CONV_2D must have exactly ``filters_kept`` filters (removed ones gone) and every pruned
    filterlet must be all-zero int8. Returns per-conv figures; raises :class:`ExportError`.
    """
    from ..frontend.tflite_reader import read_tflite

    graph = read_tflite(tflite_bytes, name="export")
    ops = [op for op in graph.operators if op.opcode == "CONV_2D"]
    if len(ops) != len(convs):
        raise ExportError(f"the int8 model has {len(ops)} CONV_2D ops, the pruned Keras model {len(convs)} convs")
    rows = []
    for op, (name, kept, total, keep) in zip(ops, convs):
        w = graph.tensor(op.inputs[1]).data
        if w is None or w.dtype != np.int8:
            raise ExportError(f"{name}: int8 constant weights expected in the export")
        if w.shape[0] != kept:
            raise ExportError(f"{name}: {w.shape[0]} filters in the int8 model, {kept} kept by the pruner")
        zero = np.all(w == 0, axis=3)
        if keep is not None:
            if keep.shape != zero.shape:
                raise ExportError(f"{name}: mask {keep.shape} vs int8 filterlets {zero.shape}")
            leaked = int(np.sum(~keep & ~zero))
            if leaked:
                raise ExportError(f"{name}: {leaked} pruned filterlets are non-zero in the int8 model")
        rows.append({"layer": name, "filters": int(w.shape[0]), "filters_total": int(total),
                     "filterlets": int(zero.size), "zero_filterlets": int(zero.sum()),
                     "filterlet_sparsity": float(zero.mean())})
    return rows
