"""The training step of `TaskAffinityModel` (TensorFlow graph mode).

Reads like Keras's own `train_step`: unpack, forward pass and per-task
losses under a tape, gradients, `optimizer.apply`, metrics. On a measured
step (or under a training method that needs them) the gradients are one
backward pass per task; their sum is the update, so training needs no extra
backward pass, and the `Meter` records the affinity from the same
`TaskGradients`. Other steps differentiate the total loss once.
"""

import keras
from keras import ops

from tag_keras import _distribute
from tag_keras import _keras_private
from tag_keras._tensorflow import tf
from tag_keras.measure import target as target_lib
from tag_keras.measure.lookahead import make_lookahead
from tag_keras.mtl import base as mtl_base
from tag_keras.mtl.base import StepContext
from tag_keras.tasks import gradients as gradients_lib
from tag_keras.tasks import shared as shared_lib
from tag_keras.tasks.gradients import TaskGradients
from tag_keras.tasks.losses import TaskLosses


class TrainStep:
    """The training step of one compiled `TaskAffinityModel`.

    Args:
        model: The compiled model.
    """

    def __init__(self, model):
        self.model = model
        self.method = model.training_method
        self.task_losses = TaskLosses(_keras_private.compile_loss(model))
        self.parts = None  # `StepParts`, built at the first trace.
        # A method that reads the shared representation's gradients gets
        # the forward pass through a functional copy that also returns it.
        self.forward = None
        if self.method is not None and self.method.needs_representation:
            self.forward = keras.Model(
                model.input,
                [
                    model.output,
                    mtl_base.representation_tensor(
                        model, self.method.representation_layer
                    ),
                ],
            )

    def found_shared(self):
        """The `SharedVariables`, or None before the first traced step."""
        return None if self.parts is None else self.parts.shared

    def __call__(self, data, measure):
        """One step on `data`; `measure` (a Python bool) records affinity."""
        model, optimizer = self.model, self.model.optimizer
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        per_task = measure or (
            self.method is not None and self.method.needs_task_gradients
        )
        # Read before the forward pass, so the lookahead forward reuses the
        # same random state (dropout masks) as the real one.
        before = (
            target_lib.snapshot(model.non_trainable_variables)
            if per_task
            else None
        )
        # The first trace also finds the shared variables from the tape.
        persistent = per_task or self.parts is None
        representation = None
        with tf.GradientTape(persistent=persistent) as tape:
            if self.forward is None:
                y_pred = _keras_private.call_in_training(model, x)
            else:
                y_pred, representation = self.forward(x, training=True)
            _check_outputs(y_pred)
            losses, labels, weights = self.task_losses(
                y, y_pred, sample_weight
            )
            train_losses = (
                losses
                if self.method is None
                else self.method.weight_losses(losses)
            )
            extra = _keras_private.additional_losses(model)
            total = sum(train_losses.values())
            if extra:
                total = ops.sum([total, *extra])
            _keras_private.track_total_loss(
                model, total, tf.shape(tf.nest.flatten(x)[0])[0]
            )
            scaled = {
                t: optimizer.scale_loss(v) for t, v in train_losses.items()
            }
            extra = optimizer.scale_loss(ops.sum(extra)) if extra else None
            scaled_total = optimizer.scale_loss(total)
        parts = self._parts(tape, scaled, extra, y_pred)
        variables = parts.shared.pick(model.trainable_variables, "connected")
        if per_task:
            batch = target_lib.Batch(
                x, y, sample_weight, losses, labels, weights, before
            )
            grads = self._per_task(
                parts, tape, scaled, extra, batch, measure, representation
            )
        else:
            grads = tape.gradient(scaled_total, variables)
        optimizer.apply(grads, variables)
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _per_task(
        self, parts, tape, scaled, extra, batch, measure, representation=None
    ):
        """One backward pass per task; the update; the measurement."""
        variables = self.model.trainable_variables
        if len(batch.snapshot) != len(self.model.non_trainable_variables):
            # The first trace created state (the affinity state, a method's
            # variables) after the snapshot was taken.
            batch.snapshot = target_lib.snapshot(
                self.model.non_trainable_variables
            )
        target = parts.targets.make(batch) if measure else None
        full, shared, after = {}, {}, []
        for task in parts.tasks:
            # On a measured step, one backward pass in flight at a time.
            with tf.control_dependencies(after):
                full[task] = tape.gradient(scaled[task], variables)
            shared[task] = parts.dense_shared(full[task])
            if measure:
                after = shared[task]
        gradients = parts.task_gradients(shared)
        total = [
            _add([full[t][k] for t in parts.tasks])
            for k in range(len(variables))
        ]
        waits = []
        if self.method is not None:
            gram = None
            if representation is not None:

                def gram():
                    return _representation_gram(
                        tape, scaled, parts.tasks, representation
                    )

            combined = self.method.combine(
                gradients,
                parts.context(
                    batch,
                    parts.shared.pick(total, "heads")
                    if self.method.lookahead_heads
                    else None,
                    gram,
                ),
            )
            for k, g in zip(parts.shared.shared, combined):
                total[k] = g
            self.method.update(batch.losses, gradients)
            # The real update waits for the candidates' lookaheads, which
            # read the current weights and optimizer state.
            waits.append(tf.group(*combined))
        if extra is not None:
            total = [
                _add(pair)
                for pair in zip(total, tape.gradient(extra, variables))
            ]
        grads = parts.shared.pick(total, "connected")
        if measure:
            # A step whose update is not finite is not counted at all.
            source_ok = parts.source_ok(gradients, batch) & _finite(grads)
            waits.append(
                parts.meter().record(
                    gradients,
                    target,
                    source_ok,
                    self.model.optimizer.iterations,
                )
            )
        if not waits:
            return grads
        # The real update must wait for every read the measurement makes of
        # the weights and optimizer state (ordering by resource alone was
        # seen to let a head's update overtake its read under load).
        done = tf.group(*waits)
        return [_after(done, g) for g in grads]

    def _parts(self, tape, scaled, extra, y_pred):
        if self.parts is None:
            self.parts = StepParts(
                self.model, self.task_losses, tape, scaled, extra, y_pred
            )
        return self.parts


class StepParts:
    """What every step of one compiled model shares, found at first trace:
    the tasks, the shared variables, the target batches, the lookahead and
    the meter (both made on first use, outside the traced step)."""

    def __init__(self, model, task_losses, tape, scaled, extra, y_pred):
        self.model = model
        self.tasks = model.task_names_for([t for t in y_pred if t in scaled])
        missing = [t for t in self.tasks if t not in scaled]
        if missing:
            raise ValueError(
                f"Tasks {missing} have no loss: compile the model with one "
                f"loss per task. Tasks with a loss: {list(scaled)}. "
                f"Received: task_names={list(self.tasks)}."
            )
        measuring = model.affinity_every_n_steps > 0
        self.shared = shared_lib.discover(
            model, tape, scaled, extra, self.tasks, model.shared_layers
        )
        shared_lib.check_found(
            self.shared,
            self.tasks,
            measuring,
            needed=measuring or model.training_method is not None,
        )
        held_out = model.held_out_batches() if measuring else None
        self.targets = target_lib.TargetBatches(
            model, task_losses, self.tasks, self.shared, held_out
        )
        self._lookahead = self._meter = self._head_lookahead = None
        if model.training_method is not None:
            model.training_method.set_shared_variables(
                self.shared.pick(model.trainable_variables)
            )

    def dense_shared(self, grads):
        """The shared part of one task's gradients, dense, zeros for None."""
        shared = self.shared.pick(self.model.trainable_variables)
        return [
            gradients_lib.dense_or_zeros(g, v)
            for g, v in zip(self.shared.pick(grads), shared)
        ]

    def task_gradients(self, shared):
        """`TaskGradients` of `{task: dense shared gradients}`."""
        return TaskGradients(
            self.tasks,
            self.shared.pick(self.model.trainable_variables),
            shared,
            kernel_mask=self.shared.kernels,
            loss_scale=self.model.optimizer.scale_loss(1.0),
        )

    def lookahead(self):
        """The `OptimizerLookahead` of the shared variables (made once)."""
        if self._lookahead is None:
            self._lookahead = self._make_lookahead("shared")
        return self._lookahead

    def meter(self):
        """The `Meter` into the model's recorder (made once per compiled
        step: a recompiled model's optimizer gets its own)."""
        if self._meter is None:
            self._meter = self.model.affinity_recorder.make_meter(
                self.lookahead, self.model.optimizer
            )
        return self._meter

    def context(self, batch, head_gradients=None, representation_gram=None):
        """The `StepContext` a training method's `combine` receives.

        With `head_gradients` (one per head variable), the lookahead moves
        the heads by the optimizer's step on them too, and `losses` are the
        losses with the moved heads and the current shared weights.
        """
        target = self.targets.make(batch, use_held_out=False)
        heads, before = None, target.before
        if head_gradients is not None:
            heads = self.head_lookahead().step(head_gradients)
            before = target.losses_at(target.shared_values, heads)

        def lookahead(shared_gradients):
            return target.losses_at(
                self.lookahead().step(shared_gradients), heads
            )

        return StepContext(before, target.ok, lookahead, representation_gram)

    def head_lookahead(self):
        """An `OptimizerLookahead` of the head variables (made once)."""
        if self._head_lookahead is None:
            self._head_lookahead = self._make_lookahead("heads")
        return self._head_lookahead

    def _make_lookahead(self, which):
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        return make_lookahead(
            optimizer,
            self.shared.pick(self.model.trainable_variables, which),
            self.model.distribute_strategy,
        )

    def source_ok(self, gradients, batch):
        """`[n]`: the task can be a source (labels, usable loss and grads)."""
        _, usable = self.targets.usable(
            batch.losses, batch.labels, batch.weights
        )
        return usable & gradients.finite()


def _representation_gram(tape, scaled, tasks, representation):
    """`[n, n]` global-batch Gram matrix of the tasks' gradients with
    respect to the representation (each replica's block summed)."""
    rows = [
        tf.reshape(
            tf.cast(tape.gradient(scaled[t], representation), tf.float32), [-1]
        )
        for t in tasks
    ]
    local = tf.stack(rows)
    return _distribute.replica_sum(tf.matmul(local, local, transpose_b=True))


def _check_outputs(y_pred):
    if not isinstance(y_pred, dict):
        raise TypeError(
            "TaskAffinityModel needs `call` to return a dict keyed by task "
            f"name. Received: an output of type {type(y_pred).__name__}."
        )


def _finite(grads):
    """True when every gradient is finite on every replica."""
    flags = [
        tf.reduce_all(tf.math.is_finite(_dense(g)))
        for g in grads
        if g is not None
    ]
    return _distribute.replica_all(tf.reduce_all(flags))


def _add(grads):
    present = [g for g in grads if g is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return tf.add_n([_dense(g) for g in present])


def _after(done, gradient):
    """`gradient`, available only once `done` has been computed."""
    if gradient is None:
        return None
    with tf.control_dependencies([done]):
        if isinstance(gradient, tf.IndexedSlices):
            return tf.IndexedSlices(
                tf.identity(gradient.values),
                gradient.indices,
                gradient.dense_shape,
            )
        return tf.identity(gradient)


def _dense(gradient):
    """Embedding gradients come as IndexedSlices; sums need dense tensors."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.convert_to_tensor(gradient)
    return gradient


def make_train_function(model):
    """A train function choosing the measured or plain step per step.

    Deciding in Python keeps unmeasured steps exactly Keras's step, and is
    required under `tf.distribute`, which does not support the optimizer's
    cross-replica synchronisation inside a `tf.cond`. With
    `steps_per_execution > 1` one traced function decides with `tf.cond`.

    Args:
        model: The model; `model.step(data, measure)` is one step.
    """
    every = model.affinity_every_n_steps

    def measured(data):
        return model.step(data, measure=True)

    def plain(data):
        return model.step(data, measure=False)

    if model.steps_per_execution > 1:
        if model.distribute_strategy.num_replicas_in_sync > 1:
            raise ValueError(
                "Measuring affinity under a distribution strategy needs "
                "steps_per_execution=1. Received: steps_per_execution="
                f"{model.steps_per_execution}."
            )

        def either(data):
            due = tf.equal(model.optimizer.iterations % every, 0)
            return tf.cond(due, lambda: measured(data), lambda: plain(data))

        return _keras_private.make_function(model, either)
    measured_fn = _keras_private.make_function(model, measured)
    plain_fn = _keras_private.make_function(model, plain)

    def function(iterator):
        # `fit` resets the count to None; it is read once per `fit`.
        if model.next_train_step is None:
            model.next_train_step = int(
                ops.convert_to_numpy(model.optimizer.iterations)
            )
        due = every > 0 and model.next_train_step % every == 0
        logs = (measured_fn if due else plain_fn)(iterator)
        model.next_train_step += 1
        if due and model.has_task_names:
            # Counted on the host: a logger reads the state only after a
            # measured step.
            recorder = model.affinity_recorder
            recorder.measured_steps = (recorder.measured_steps or 0) + 1
        return logs

    return function
