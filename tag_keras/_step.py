"""The training step of `TaskAffinityModel` (TensorFlow graph mode).

Reads top to bottom like Keras's own `train_step`: unpack, forward pass and
per-task losses under a tape, gradients, `optimizer.apply`, metrics. On a
measured step the gradients are one backward pass per task; their sum is the
update (so training needs no extra backward pass), and each task's shared
gradient drives one lookahead. Unmeasured steps differentiate the total loss
once, as a plain Keras step does.
"""

import keras
import tensorflow as tf
from keras import ops
from keras.src.losses import loss as loss_module

from tag_keras import _distribute
from tag_keras import affinity as affinity_lib
from tag_keras._distribute import replica_sum
from tag_keras.lookahead import OptimizerLookahead
from tag_keras.mtl.base import StepContext


def train_step(model, data, measure="cond"):
    """One training step of `model` on `data`; returns the metrics dict.

    Args:
        model: The `TaskAffinityModel`.
        data: The batch.
        measure: True or False when the caller knows whether this step is
            measured (one traced function each, required under
            `tf.distribute`, where synchronisation inside `tf.cond` is not
            supported); `"cond"` decides in the graph from the optimizer's
            iteration count (used with `steps_per_execution > 1`).
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    optimizer = model.optimizer
    every = model.affinity_every_n_steps
    if not every:
        measure = False
    snapshot = None
    uses_lookahead = model.strategy is not None and getattr(
        model.strategy, "uses_lookahead", False)
    if uses_lookahead or (
        measure is not False and model.affinity_method == "lookahead"
    ):
        # Read before the forward pass, so the lookahead forward reuses the
        # same random state (dropout masks) as the real one.
        snapshot = _values(model.non_trainable_variables)
    with tf.GradientTape(persistent=True) as tape:
        if model._call_has_training_arg:
            y_pred = model(x, training=True)
        else:
            y_pred = model(x)
        if not isinstance(y_pred, dict):
            raise TypeError(
                "TaskAffinityModel needs `call` to return a dict keyed by "
                f"task name. Received: an output of type "
                f"{type(y_pred).__name__}."
            )
        losses, labels, weights = model._task_losses(y, y_pred, sample_weight)
        train_losses = losses
        if model.strategy is not None:
            train_losses = model.strategy.weight_losses(losses)
        total = model._total_loss(train_losses)
        model._loss_tracker.update_state(
            loss_module.unscale_loss_for_distribution(total),
            sample_weight=tf.shape(tf.nest.flatten(x)[0])[0],
        )
        scaled_total = optimizer.scale_loss(total)
        scaled = {t: optimizer.scale_loss(v) for t, v in train_losses.items()}
        extra = [model._aggregate_additional_loss(v) for v in model.losses]
        scaled_extra = optimizer.scale_loss(ops.sum(extra)) if extra else None

    step = _Measurement.of(model, tape, scaled, scaled_extra, y_pred)
    if snapshot is not None and len(snapshot) != len(
        model.non_trainable_variables
    ):
        snapshot = _values(model.non_trainable_variables)
    batch = _Batch(x, y, sample_weight, losses, labels, weights, snapshot)
    variables = model.trainable_variables

    def plain():
        grads = tape.gradient(scaled_total, variables)
        return [grads[k] for k in step.connected]

    def per_task(measure):
        return step.per_task(tape, scaled, scaled_extra, batch, measure)

    if measure == "cond":
        measure = tf.equal(optimizer.iterations % every, 0)
    if model.strategy is not None and model.strategy.needs_task_gradients:
        grads = per_task(measure)
    elif measure is True or measure is False:
        grads = per_task(True) if measure else plain()
    else:
        grads = tf.cond(measure, lambda: per_task(True), plain)
    optimizer.apply(grads, [variables[k] for k in step.connected])
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def _values(variables):
    return [tf.identity(ops.convert_to_tensor(v)) for v in variables]


class _Batch:
    """What the step knows about its batch: inputs, losses, labels."""

    def __init__(self, x, y, sample_weight, losses, labels, weights,
                 snapshot):
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.losses, self.labels, self.weights = losses, labels, weights
        self.snapshot = snapshot


class _Measurement:
    """Per-model state of measured steps, built at the first trace.

    Holds the task order, which trainable variables are shared, which have a
    gradient at all, the optimizer lookahead and the held-out batches.
    """

    @classmethod
    def of(cls, model, tape, scaled, scaled_extra, y_pred):
        runtime = model._runtime
        if runtime.measurement is None:
            runtime.measurement = cls(model, tape, scaled, scaled_extra, y_pred)
        return runtime.measurement

    def __init__(self, model, tape, scaled, scaled_extra, y_pred):
        self.model = model
        if model._task_names is None:
            model._task_names = tuple(t for t in y_pred if t in scaled)
            model._create_affinity_state()
        self.tasks = model.task_names
        missing = [t for t in self.tasks if t not in scaled]
        if missing:
            raise ValueError(
                f"Tasks {missing} have no loss: compile the model with one "
                f"loss per task. Tasks with a loss: {list(scaled)}. "
                f"Received: task_names={list(self.tasks)}."
            )
        variables = model.trainable_variables
        depends = [
            [g is not None for g in tape.gradient(scaled[t], variables)]
            for t in self.tasks
        ]
        if scaled_extra is not None:
            extra = [g is not None for g in tape.gradient(scaled_extra,
                                                          variables)]
        else:
            extra = [False] * len(variables)
        self.connected = [
            k for k in range(len(variables))
            if extra[k] or any(d[k] for d in depends)
        ]
        if model.shared_layers is not None:
            ids = model._shared_variable_ids()
            self.shared = [k for k, v in enumerate(variables) if id(v) in ids]
        else:
            self.shared = [
                k for k in range(len(variables))
                if sum(d[k] for d in depends) >= 2
            ]
        measuring = model.affinity_every_n_steps > 0
        if measuring and not self.shared:
            raise ValueError(
                "Affinity needs weights shared by two or more tasks, and no "
                "trainable weight has a gradient from two task losses. Pass "
                "`shared_layers=[...]` or share an encoder. Received: tasks "
                f"{list(self.tasks)}."
            )
        optimizer = model.optimizer
        if not optimizer.built:
            optimizer.build(variables)
        self.lookahead = None
        strategy_lookahead = model.strategy is not None and getattr(
            model.strategy, "uses_lookahead", False)
        if strategy_lookahead or (
            measuring and model.affinity_method != "cosine"
        ):
            # Created eagerly, outside the traced step (the optimizer's
            # config is read as Python values).
            def create():
                with tf.init_scope(), model.distribute_strategy.scope():
                    return OptimizerLookahead(
                        optimizer, [variables[k] for k in self.shared]
                    )

            self.lookahead = _distribute.in_cross_replica_context(create)
        self.held_out = model._held_out_iterator() if measuring else None
        if model.strategy is not None:
            if model.strategy.needs_task_gradients and not self.shared:
                raise ValueError(
                    f"{type(model.strategy).__name__} combines the gradients "
                    "of weights shared by two or more tasks, and no "
                    "trainable weight has a gradient from two task losses. "
                    "Pass `shared_layers=[...]` or share an encoder. "
                    f"Received: tasks {list(self.tasks)}."
                )
            model.strategy.set_shared_variables(
                [variables[k] for k in self.shared]
            )

    # ------------------------------------------------------------------

    def per_task(self, tape, scaled, scaled_extra, batch, measure):
        """Gradients from one backward pass per task (and affinity)."""
        model = self.model
        variables = model.trainable_variables
        strategy = model.strategy
        stream = (
            measure is True
            and model.affinity_method == "lookahead"
            and strategy is None
        )
        rows = []
        on_task = None
        if stream:
            target = self._target_batch(batch)

            def on_task(task, grads):
                rows.append(self._lookahead_row(grads, batch, target))
                return rows[-1]

        grads = {}
        after = []
        for task in self.tasks:
            with tf.control_dependencies(after):
                grads[task] = tape.gradient(scaled[task], variables)
            if on_task is not None:
                after = [on_task(task, grads[task])]

        total = [_add_all([grads[t][k] for t in self.tasks])
                 for k in range(len(variables))]
        barrier = None
        if strategy is not None:
            shared_grads = {t: self._shared(grads[t]) for t in self.tasks}
            if strategy.needs_step_context:
                combined = strategy.combine(shared_grads,
                                            self._context(batch))
                # Every real update waits for the candidates' lookaheads,
                # which read the current weights and optimizer state.
                barrier = tf.group(*[g for g in combined if g is not None])
            else:
                combined = strategy.combine(shared_grads)
            for k, g in zip(self.shared, combined):
                total[k] = g
            strategy.update(batch.losses, shared_grads)
        if scaled_extra is not None:
            extra = tape.gradient(scaled_extra, variables)
            total = [_add_all([a, b]) for a, b in zip(total, extra)]

        def record():
            if stream:
                z, target_ok = self._lookahead_matrix(rows, target)
            else:
                z, target_ok = self._matrix(grads, batch)
            return self._record(z, self._sources_ok(grads, batch), target_ok)

        waits = [] if barrier is None else [barrier]
        if measure is True:
            waits.append(record())
        elif measure is not False:
            waits.append(tf.cond(measure, record, lambda: tf.constant(False)))
        if not waits:
            return [total[k] for k in self.connected]
        done = tf.group(*waits)
        # The real update must wait for every read the measurement makes of
        # the weights and optimizer state (the lookahead's copies, the
        # current values, the step count): ordering them by resource alone
        # was seen to let a head's update overtake its read under load.
        return [_after(done, total[k]) for k in self.connected]

    # ------------------------------------------------------------------

    def _shared(self, grads):
        return [grads[k] for k in self.shared]

    def _context(self, batch):
        """The `StepContext` a strategy's `combine` receives."""
        target = self._target_batch(batch, held_out=False)
        lookahead = None
        if self.lookahead is not None:
            def lookahead(shared_grads):
                return self._lookahead_losses(shared_grads, batch, target)
        return StepContext(
            target.before, self._target_ok(target), lookahead,
            lambda shared_grads: replica_sum(self._flat_shared(shared_grads)),
        )

    def _target_batch(self, batch, held_out=True):
        """The batch whose losses the lookahead measures, with `before`."""
        current = _values(self.model.trainable_variables)
        if self.held_out is None or not held_out:
            losses = batch.losses
            x, y, sample_weight = batch.x, batch.y, batch.sample_weight
            present = self._labels_present(batch.labels, batch.weights)
        else:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(
                next(self.held_out)
            )
            losses, labels, weights = self._losses_with(
                current, batch.snapshot, x, y, sample_weight
            )
            present = self._labels_present(labels, weights)
        before = replica_sum(tf.stack([losses[t] for t in self.tasks]))
        return _Target(x, y, sample_weight, before, present, current)

    def _labels_present(self, labels, weights):
        return _distribute.replica_any(tf.stack([
            affinity_lib.has_labels(labels[t], weights[t]) for t in self.tasks
        ]))

    def _losses_with(self, trainable, nontrainable, x, y, sample_weight):
        model = self.model
        kwargs = {"training": True} if model._call_has_training_arg else {}
        y_pred, _ = model.stateless_call(trainable, nontrainable, x, **kwargs)
        return model._task_losses(y, y_pred, sample_weight, track=False)

    def _lookahead_row(self, grads, batch, target):
        """Target losses after one real optimizer step on `grads`."""
        return self._lookahead_losses(self._shared(grads), batch, target)

    def _lookahead_losses(self, shared_grads, batch, target):
        """Target losses after one real optimizer step on shared grads."""
        new_values = self.lookahead.step(shared_grads)
        values = list(target.current)
        for k, value in zip(self.shared, new_values):
            values[k] = value
        losses, _, _ = self._losses_with(
            values, batch.snapshot, target.x, target.y, target.sample_weight
        )
        return replica_sum(tf.stack([losses[t] for t in self.tasks]))

    def _lookahead_matrix(self, rows, target):
        rate = self._rate()
        z = affinity_lib.lookahead_affinity(target.before, tf.stack(rows), rate)
        return z, self._target_ok(target)

    def _matrix(self, grads, batch):
        """The affinity matrix from stored per-task gradients."""
        method = self.model.affinity_method
        target = self._target_batch(batch)
        if method == "lookahead":
            rows = [self._lookahead_row(grads[t], batch, target)
                    for t in self.tasks]
            return self._lookahead_matrix(rows, target)
        if method == "cosine":
            flat = replica_sum(tf.stack([
                self._flat(grads[t], kernels_only=True) for t in self.tasks
            ]))
            gram = tf.matmul(flat, flat, transpose_b=True)
            return affinity_lib.cosine_affinity(gram), self._target_ok(target)
        # first_order: -<grad_j, step_i> with the optimizer's real step.
        unscale = 1.0 / self.model.optimizer.scale_loss(tf.constant(1.0))
        current = [target.current[k] for k in self.shared]
        flat = replica_sum(
            tf.stack([self._flat(grads[t]) for t in self.tasks])
        ) * unscale
        steps = []
        for t in self.tasks:
            new_values = self.lookahead.step(self._shared(grads[t]))
            steps.append(tf.concat([
                tf.reshape(tf.cast(n - c, flat.dtype), [-1])
                for n, c in zip(new_values, current)
            ], axis=0))
        dots = tf.matmul(tf.stack(steps), flat, transpose_b=True)
        z = affinity_lib.first_order_affinity(dots, target.before, self._rate())
        return z, self._target_ok(target)

    def _shared_variables(self):
        variables = self.model.trainable_variables
        return [variables[k] for k in self.shared]

    def _flat(self, grads, kernels_only=False):
        return self._flat_shared(self._shared(grads), kernels_only)

    def _flat_shared(self, shared_grads, kernels_only=False):
        parts = []
        for variable, g in zip(self._shared_variables(), shared_grads):
            if kernels_only and self.model.cosine_kernels_only and len(
                variable.shape
            ) < 2:
                continue
            if g is None:
                g = tf.zeros(variable.shape, variable.dtype)
            parts.append(tf.reshape(tf.cast(_dense(g), "float32"), [-1]))
        return tf.concat(parts, axis=0)

    def _rate(self):
        if not self.model.scale_by_learning_rate or self.lookahead is None:
            return None
        return self.lookahead.learning_rate

    def _target_ok(self, target):
        return affinity_lib.usable_loss(target.before) & target.present

    def _sources_ok(self, grads, batch):
        losses = replica_sum(tf.stack([batch.losses[t] for t in self.tasks]))
        labelled = self._labels_present(batch.labels, batch.weights)
        finite = []
        for t in self.tasks:
            ok = tf.constant(True)
            for g in self._shared(grads[t]):
                if g is not None:
                    ok &= tf.reduce_all(tf.math.is_finite(_dense(g)))
            finite.append(ok)
        finite = _distribute.replica_all(tf.stack(finite))
        return affinity_lib.usable_loss(losses) & labelled & finite

    def _record(self, z, source_ok, target_ok):
        model = self.model
        z = tf.cast(z, "float64")
        valid = affinity_lib.valid_pairs(z, source_ok, target_ok)
        as_count = tf.cast(valid, "float64")
        model.affinity_sum.assign_add(tf.where(valid, z, tf.zeros_like(z)))
        model.affinity_count.assign_add(as_count)
        model.affinity_skip_count.assign_add(1.0 - as_count)
        nan = tf.fill(tf.shape(z), tf.constant(float("nan"), "float64"))
        model.affinity_last.assign(tf.where(valid, z, nan))
        model.affinity_last_step.assign(
            tf.cast(model.optimizer.iterations, "int64")
        )
        with tf.control_dependencies([v.value for v in (
            model.affinity_sum, model.affinity_count,
            model.affinity_skip_count, model.affinity_last,
            model.affinity_last_step,
        )]):
            return tf.identity(valid[0, 0])


class _Target:
    """The batch the lookahead losses are measured on."""

    def __init__(self, x, y, sample_weight, before, present, current):
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.before, self.present = before, present
        self.current = current  # the trainable values before the step


def _add_all(grads):
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
            return tf.IndexedSlices(tf.identity(gradient.values),
                                    gradient.indices, gradient.dense_shape)
        return tf.identity(gradient)


def _dense(gradient):
    """Embedding gradients come as IndexedSlices; sums need dense tensors."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.convert_to_tensor(gradient)
    return gradient
