"""The training step of `TaskAffinityModel` on Keras's JAX backend.

Reads like Keras's own JAX `train_step(state, data)`: the state tuple in,
the step's logs and the new state out, nothing written to the model's
variables (a JAX `fit` empties them while it runs). On a measured step
the gradients are one `jax.grad` per task (a loop, as the tape is on
TensorFlow: a `vmap` over one VJP would back-propagate every head for
every task); their sum is the update, so the optimizer sees what Keras's
step gives it up to the order of the summation. The affinity comes from
the same estimators as on TensorFlow (`tag_keras.measure.estimators`),
given JAX versions of what they read:

* `JaxTaskGradients`: the per-task gradients of the shared variables;
* `Target`: the target losses before the step, and `losses_at`, a
  `stateless_call` at moved shared weights from the step's input
  non-trainable state (the same dropout masks; BatchNorm statistics left
  alone);
* `JaxLookahead`: the compiled optimizer's real next step on a source's
  gradient, through `optimizer.stateless_apply` on the full variable list
  (the source's gradient on the shared variables, None elsewhere), so no
  shadow variables are needed; its new optimizer state is thrown away.

The matrix goes to the host (`io_callback`) and is summed in float64
there (`HostAffinityState`). Shared variables are those two or more task
losses depend on, read from the traced program (`_keras_jax_private.
used_inputs`, since JAX's gradients are zeros rather than None), or the
weights of `shared_layers=`.

Group sources are drawn on the host (`GroupSources.host_indices`) and
passed to the jitted step, as is the next batch of `affinity_data`
(`held_out.numpy_cycle`); the group rows are `sources.group_matrix`, as on
TensorFlow.

Not ported to JAX (each refused in one line at `compile` or `fit`):
training methods, distribution, loss-scale optimizers.
"""

from __future__ import annotations

import warnings

import jax
import keras
from jax.experimental import io_callback
from keras import ops

from tag_keras import _keras_jax_private
from tag_keras import _keras_private
from tag_keras._errors import InputError
from tag_keras.measure import estimators
from tag_keras.measure import held_out as held_out_lib
from tag_keras.measure import sources as sources_lib
from tag_keras.measure import target as target_lib
from tag_keras.measure.target import Target
from tag_keras.tasks import labels as labels_lib
from tag_keras.tasks import shared as shared_lib
from tag_keras.tasks.gradients import TaskGradients
from tag_keras.tasks.losses import TaskLosses


def check_supported(model):
    """Raises `InputError` for what the JAX step does not support."""
    unsupported = []
    if model.training_method is not None:
        unsupported.append("training_method=")
    if unsupported:
        raise InputError(
            f"On Keras's JAX backend, TaskAffinityModel supports neither "
            f"{', '.join(unsupported)}; they need KERAS_BACKEND=tensorflow. "
            f"Received: backend='jax', {', '.join(unsupported)}"
        )


class JaxTaskGradients(TaskGradients):
    """`TaskGradients` on one JAX device: a row of a traced index (inside
    `lax.map`) reads the stacked gradients (no `tf.TensorArray`), and the
    batch is global.
    """

    def prepare_rows(self):
        """Stacks each variable's n gradients, for `row` of a traced
        index (inside `lax.map`); made once."""
        if self._arrays is None:
            self._arrays = [
                ops.stack([self._lists[t][k] for t in self.tasks])
                for k in range(len(self.variables))
            ]

    def row(self, i):
        if isinstance(i, int):
            return self.of(self.tasks[i])
        self.prepare_rows()
        return [stack[i] for stack in self._arrays]

    def global_flat(self, kernels_only=False):
        return self.flat(kernels_only)


class JaxLookahead:
    """The compiled optimizer's next step on the shared variables, from
    this step's state (`stateless_apply`; nothing is written).

    Args:
        optimizer: The model's built optimizer.
        trainable: The trainable variables' values this step.
        optimizer_state: The optimizer variables' values this step.
        shared: Indices of the shared variables in `trainable`.
    """

    def __init__(self, optimizer, trainable, optimizer_state, shared):
        self.optimizer = optimizer
        self.trainable, self.state = list(trainable), list(optimizer_state)
        self.shared = list(shared)

    @property
    def learning_rate(self):
        """This step's learning rate (a schedule reads the iterations)."""
        mapping = list(zip(self.optimizer.variables, self.state))
        with keras.StatelessScope(state_mapping=mapping):
            return ops.convert_to_tensor(self.optimizer.learning_rate)

    def step(self, gradients):
        """The shared variables' values after one real optimizer step on
        `gradients` (one per shared variable; None counts as zero)."""
        full = [None] * len(self.trainable)
        for k, g in zip(self.shared, gradients):
            full[k] = ops.zeros_like(self.trainable[k]) if g is None else g
        with warnings.catch_warnings():
            # The heads get no gradient on purpose.
            warnings.filterwarnings("ignore", "Gradients do not exist")
            moved, _ = self.optimizer.stateless_apply(
                self.state, full, self.trainable
            )
        return [moved[k] for k in self.shared]

    def sgd_step(self, gradients, values):
        """`values - lr * gradients`: the paper's plain step."""
        rate = self.learning_rate
        return [
            v - ops.cast(rate, v.dtype) * ops.cast(g, v.dtype)
            for v, g in zip(values, gradients)
        ]

    def state_step(self):
        """The values after a step on zero gradients (the state's move)."""
        return self.step([None] * len(self.shared))


class JaxTrainStep:
    """The measured and plain training steps of one compiled model.

    Args:
        model: The compiled `TaskAffinityModel`.
    """

    def __init__(self, model):
        self.model = model
        self.task_losses = TaskLosses(_keras_private.compile_loss(model))
        self.shared = None  # `SharedVariables`, found at the first trace

    def found_shared(self):
        """The `SharedVariables`, or None before the first traced step."""
        return self.shared

    def plain(self, state, data):
        """Keras's own JAX step, NaN labels masked (an unmeasured step)."""
        return keras.Model.train_step(
            self.model, state, labels_lib.mask_missing_in_batch(data)
        )

    # The per-task losses --------------------------------------------------

    def _task_losses(self, trainable, non_trainable, x, y, sample_weight):
        """`(losses, labels, weights, y_pred, new state, add_loss terms)`,
        the first three dicts keyed by task, at `trainable`."""
        y_pred, new_state, extra = _keras_jax_private.stateless_forward(
            self.model, trainable, non_trainable, x
        )
        losses, labels, weights = self.task_losses(
            y, y_pred, sample_weight, track=False
        )
        return losses, labels, weights, y_pred, new_state, extra

    def _losses(self, trainable, non_trainable, x, y, sample_weight):
        """`(per-task loss vector, aux)` at `trainable`."""
        tasks = self.model.task_names
        losses, labels, weights, y_pred, new_state, extra = self._task_losses(
            trainable, non_trainable, x, y, sample_weight
        )
        vector = ops.stack([losses[t] for t in tasks])
        extra = ops.sum(ops.stack(extra)) if extra else None
        return vector, (y_pred, new_state, labels, weights, extra)

    def _discover(self, trainable, non_trainable, x, y, sample_weight):
        """Finds the shared variables from the traced program, once."""
        if self.shared is not None:
            return
        model, tasks = self.model, self.model.task_names
        depends = []
        for task in tasks:
            # This task's loss alone (not an entry of the stacked vector,
            # which reads every task's loss).
            def loss(values, task=task):
                return self._task_losses(
                    values, non_trainable, x, y, sample_weight
                )[0][task]

            depends.append(_keras_jax_private.used_inputs(loss, trainable))
        self.shared = shared_lib.from_dependencies(
            model, depends, shared_layers=model.shared_layers
        )
        shared_lib.check_found(
            self.shared, tasks, model.affinity_every_n_steps > 0
        )

    # The steps ------------------------------------------------------------

    def __call__(
        self, state, data, measure, group_indices=None, held_out=None
    ):
        """One step: `(logs, new state)`; `measure` (a Python bool)
        records the affinity of this step, and of the groups
        `group_indices` (rows of the model's group sources, drawn on the
        host) when the model measures group sources; `held_out`, a batch
        of `affinity_data`, is where the targets' losses are measured
        (None: on the step's own batch)."""
        model = self.model
        trainable, non_trainable, optimizer_state, metrics_state = state
        data = labels_lib.mask_missing_in_batch(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        tasks = model.task_names
        self._discover(trainable, non_trainable, x, y, sample_weight)
        grads, aux = [], None
        for task in tasks:
            # This task's loss picked from the dict, not from a stacked
            # vector: the other heads' losses then get JAX's symbolic zero
            # cotangents, so no backward pass runs through their heads.
            def loss(values, task=task):
                forward = self._task_losses(
                    values, non_trainable, x, y, sample_weight
                )
                return forward[0][task], forward

            g, aux = jax.grad(loss, has_aux=True)(trainable)
            grads.append(g)
        losses, labels, weights, y_pred, new_non_trainable, extra = aux
        before = ops.stack([losses[t] for t in tasks])
        extra = ops.sum(ops.stack(extra)) if extra else None
        update = [sum(g[k] for g in grads) for k in range(len(trainable))]
        if extra is not None:  # `add_loss` terms (regularisers)
            extra_grads = jax.grad(
                lambda values: self._losses(
                    values, non_trainable, x, y, sample_weight
                )[1][4]
            )(trainable)
            update = [u + e for u, e in zip(update, extra_grads)]
        if measure:
            finite = ops.all(
                ops.stack([ops.all(ops.isfinite(u)) for u in update])
            )
            self._measure(
                (trainable, non_trainable, optimizer_state),
                (x, y, sample_weight),
                grads,
                (losses, labels, weights),
                (group_indices, held_out, finite),
            )
        new_trainable, optimizer_state = model.optimizer.stateless_apply(
            optimizer_state, update, trainable
        )
        total = ops.sum(before) + (0.0 if extra is None else extra)
        mapping = list(zip(model.metrics_variables, metrics_state))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            # Each task's `<task>_loss` tracker, as Keras's step updates it.
            self.task_losses(y, y_pred, sample_weight, track=True)
        metrics_state = [
            scope.get_current_value(v)
            if scope.get_current_value(v) is not None
            else value
            for v, value in zip(model.metrics_variables, metrics_state)
        ]
        logs, metrics_state = _keras_jax_private.update_metrics(
            model, metrics_state, total, x, y, y_pred, sample_weight
        )
        return logs, (
            new_trainable,
            new_non_trainable,
            optimizer_state,
            metrics_state,
        )

    def _measure(self, state, batch, grads, forward, measured):
        """Computes the step's matrices and sends them to the host state.

        Args:
            state: `(trainable, non-trainable, optimizer)` values.
            batch: `(x, y, sample_weight)`, NaN labels masked.
            grads: Each task's gradients of every trainable variable.
            forward: `(losses, labels, weights)` dicts of the step's
                forward pass.
            measured: `(group indices or None, held-out batch or None,
                whether the update is finite)`.
        """
        trainable, non_trainable, optimizer_state = state
        group_indices, held_out, update_finite = measured
        model, tasks, shared = self.model, self.model.task_names, self.shared
        settings = model.affinity_settings
        gradients = JaxTaskGradients(
            tasks,
            shared.pick(list(trainable)),
            {t: shared.pick(g) for t, g in zip(tasks, grads)},
            kernel_mask=shared.kernels,
        )
        _, source_ok = target_lib.usable(tasks, shared, *forward)
        source_ok = source_ok & gradients.finite() & update_finite
        if held_out is not None:  # the targets' losses on held-out data
            batch = keras.utils.unpack_x_y_sample_weight(
                labels_lib.mask_missing_in_batch(held_out)
            )
            forward = self._task_losses(trainable, non_trainable, *batch)[:3]
        before, target_ok = target_lib.usable(tasks, shared, *forward)

        def losses_at(shared_values, head_values=None):
            if head_values is not None:
                raise InputError(
                    "Moving the task heads in a lookahead is not ported to "
                    "Keras's JAX backend. Received: backend='jax'"
                )
            values = list(trainable)
            for k, value in zip(shared.shared, shared_values):
                values[k] = value
            return self._losses(values, non_trainable, *batch)[0]

        target = Target(
            tasks, before, target_ok, shared.pick(list(trainable)), losses_at
        )
        estimator = estimators.make_estimator(
            settings.method,
            lambda: JaxLookahead(
                model.optimizer, trainable, optimizer_state, shared.shared
            ),
            optimizer=model.optimizer,
            scale_by_learning_rate=settings.scale_by_learning_rate,
            kernels_only=settings.cosine_kernels_only,
            step=settings.lookahead_step,
        )
        z = ops.cast(estimator.matrix(gradients, target), "float32")
        iterations = optimizer_state[
            index(model.optimizer.variables, model.optimizer.iterations)
        ]
        recorder = model.affinity_recorder
        io_callback(
            recorder.state.record,
            None,
            z,
            source_ok,
            target_ok,
            iterations,
            ordered=True,
        )
        if group_indices is not None:
            z, group_ok = sources_lib.group_matrix(
                recorder.group_sources.masks,
                group_indices,
                estimator,
                gradients,
                target,
                source_ok,
            )
            io_callback(
                recorder.group_state.record,
                None,
                group_indices,
                ops.cast(z, "float32"),
                group_ok,
                target_ok,
                ordered=True,
            )


def position(variables, variable):
    """Where `variable` is in `variables` (by identity), or None."""
    for k, v in enumerate(variables):
        if v is variable:
            return k
    return None


def index(variables, variable):
    """Where `variable` is in `variables`; raises if it is not there."""
    k = position(variables, variable)
    if k is None:
        raise ValueError(f"{variable.path} is not among the variables.")
    return k


def make_train_function(model):
    """`function(state, iterator) -> (logs, state)`: the measured or the
    plain jitted step, chosen per step on the host (every
    `affinity_every_n_steps`-th optimizer step is measured); with
    `steps_per_execution` k, up to k steps per call, as Keras's JAX
    trainer runs them (its logs are the last step's)."""
    every = model.affinity_every_n_steps
    step = model._train_step
    groups = model.group_sources
    measured = jax.jit(
        lambda state, data, indices, held_out: step(
            state, data, True, indices, held_out
        ),
        donate_argnums=0,
    )
    held_out = (
        None
        if model._affinity_data is None
        else held_out_lib.numpy_cycle(
            model._affinity_data, model._affinity_batch_size
        )
    )
    plain = jax.jit(step.plain, donate_argnums=0)
    counter = index(model.optimizer.variables, model.optimizer.iterations)
    recorder = model.affinity_recorder

    def one_step(state, data):
        if model.next_train_step is None:  # read once per `fit`
            model.next_train_step = int(state[2][counter])
        due = every > 0 and model.next_train_step % every == 0
        if due:
            indices = (
                None
                if groups is None
                else groups.host_indices(model.next_train_step)
            )
            logs, state = measured(
                state,
                data,
                indices,
                None if held_out is None else next(held_out),
            )
        else:
            logs, state = plain(state, data)
        model.next_train_step += 1
        if due:
            jax.effects_barrier()  # the host state holds this step now
            recorder.measured_steps = (recorder.measured_steps or 0) + 1
        return logs, state

    def function(state, iterator):
        logs, state = one_step(state, next(iterator))
        for _ in range(model.steps_per_execution - 1):
            try:
                data = next(iterator)
            except StopIteration:
                break
            logs, state = one_step(state, data)
        return logs, state

    return function
