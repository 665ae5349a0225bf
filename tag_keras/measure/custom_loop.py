"""`AffinityMeter`: inter-task affinity in a custom training loop.

The same measurement `TaskAffinityModel` makes inside `fit` (the same
`TaskGradients`, estimators, `Meter` and `AffinityState`), for a loop that
computes its own per-task losses and applies its own updates: a hand-written
`tf.function` step, a reinforcement-learning loop, a critic's loss.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import Self

import keras
from keras import ops

from tag_keras import _distribute
from tag_keras import _keras_private
from tag_keras._tensorflow import tf
from tag_keras.measure import affinity as affinity_lib
from tag_keras.measure import sources as sources_lib
from tag_keras.measure.forward import ForwardPass
from tag_keras.measure.lookahead import make_lookahead
from tag_keras.measure.readout import AffinityReadout
from tag_keras.measure.settings import AffinitySettings
from tag_keras.measure.target import Target
from tag_keras.tasks.gradients import TaskGradients
from tag_keras.tasks.names import check_task_names


class AffinityMeter(AffinityReadout):
    """Measures affinity where the loop, not `fit`, computes the losses.

    Call `measure` on a step, with each task's gradient of the shared
    variables and a function giving the tasks' losses on the same batch at
    other values of the shared variables, before the loop applies its
    update. The lookahead is `optimizer`'s real next step on copies, as in
    `TaskAffinityModel` (nothing the loop owns is written); `affinity()`,
    `affinity_stderr()`, `affinity_counts()`, `last_step_affinity()` read
    the accumulated state, and `end_epoch()` sets `epoch_affinity` and
    `fit_affinity` so that an `AffinityLogger` can write the same files:

    ```python
    logger = tag_keras.AffinityLogger("runs/loop")
    logger.set_model(meter)
    logger.on_train_begin()
    for epoch in range(epochs):
        logger.on_epoch_begin(epoch)
        for batch, data in enumerate(dataset):
            train_step(data)                  # calls meter.measure(...)
            logger.on_train_batch_end(batch)
        meter.end_epoch()
        logger.on_epoch_end(epoch)
    logger.on_train_end()
    ```

    Args:
        shared_variables: The variables every task's loss depends on.
        optimizer: The built `keras.optimizers.Optimizer` that updates them.
        task_names: The task names, in matrix order.
        affinity_method: `"lookahead"`, `"first_order"`, `"cosine"` or a
            name registered with `tag_keras.register_affinity_method`.
        lookahead_step: `"optimizer"`, `"sgd"` or `"increment"` (see
            `TaskAffinityModel`).
        scale_by_learning_rate: Divide by this step's learning rate.
        cosine_kernels_only: With `"cosine"`, weight tensors of rank > 1
            only.
        affinity_sources: The group sources of `group_affinity()` (see
            `TaskAffinityModel`).
        affinity_random_subsets: Random groups added each measured step
            (see `TaskAffinityModel`).
        affinity_seed: Seed of those random groups.
        max_subset_tasks: Largest number of tasks for
            `affinity_sources="subsets"`.

    Example (in a `tf.function` step; `model` maps `x` to a dict of task
    outputs, `encoder` holds the shared layers):

    ```python
    meter = tag_keras.AffinityMeter(encoder.trainable_variables, optimizer,
                                    ["a", "b"])
    with tf.GradientTape(persistent=True) as tape:
        forward = meter.forward(model, x)   # model(x, training=True)
        losses = task_losses(forward.outputs, y)
    shared = encoder.trainable_variables
    grads = {t: tape.gradient(losses[t], shared) for t in losses}
    done = meter.measure(grads, losses, forward.losses_at(
        lambda outputs: task_losses(outputs, y)))
    with tf.control_dependencies([done]):
        optimizer.apply(...)              # the loop's own update
    ```

    `forward.losses_at` replays the forward pass with the step's own
    dropout masks and BatchNorm state (`ForwardPass`); a replay that reads
    `model.non_trainable_variables` after the pass would see other masks.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        _keras_private.check_backend(
            what="AffinityMeter", supported=("tensorflow", "jax")
        )
        if keras.backend.backend() == "jax" and cls is AffinityMeter:
            # On JAX the meter is functional (`jax_meter`): its class.
            from tag_keras.measure.jax_meter import JaxAffinityMeter

            return super().__new__(JaxAffinityMeter)  # type: ignore[return-value]
        return super().__new__(cls)

    def __init__(
        self,
        shared_variables: Sequence,
        optimizer: keras.optimizers.Optimizer,
        task_names: Sequence[str],
        *,
        affinity_method: str = "lookahead",
        lookahead_step: str = "optimizer",
        scale_by_learning_rate: bool = True,
        cosine_kernels_only: bool = False,
        affinity_sources: str | int = "tasks",
        affinity_random_subsets: int | None = None,
        affinity_seed: int = 0,
        max_subset_tasks: int = sources_lib.MAX_SUBSET_TASKS,
    ):
        self.affinity_settings = AffinitySettings.from_keywords(
            affinity_method=affinity_method,
            lookahead_step=lookahead_step,
            scale_by_learning_rate=scale_by_learning_rate,
            cosine_kernels_only=cosine_kernels_only,
            affinity_sources=affinity_sources,
            affinity_random_subsets=affinity_random_subsets,
            affinity_seed=affinity_seed,
            max_subset_tasks=max_subset_tasks,
        )
        self.shared_variables = list(shared_variables)
        if not self.shared_variables:
            raise ValueError(
                "`shared_variables` must name at least one "
                "variable. Received: shared_variables=[]."
            )
        names = check_task_names(task_names, minimum=2)
        self.optimizer = optimizer
        self._check_settings()
        self._recorder = self._meter = None
        self._decide_task_names(names)

    def _check_settings(self):
        """Refuses settings this backend's meter does not measure."""

    @property
    def distribute_strategy(self) -> tf.distribute.Strategy:
        """The current `tf.distribute` strategy (for `AffinityLogger`)."""
        return tf.distribute.get_strategy()

    def measure(
        self,
        gradients: dict,
        losses: dict,
        losses_at: Callable[[list], dict],
        step: Any = None,
    ) -> tf.Tensor:
        """Measures one step; returns a tensor to wait on before updating.

        Args:
            gradients: `{task: [gradient or None per shared variable]}`, as
                the loop would pass them to `optimizer` (a replica's share
                under `tf.distribute`).
            losses: `{task: scalar loss}` on this batch (a replica's share).
            losses_at: `values -> {task: loss}`: the tasks' losses on the
                same batch with the shared variables set to `values` (one
                tensor per shared variable) and everything else unchanged,
                writing no variable: `self.forward(model, x).losses_at(...)`
                gives it, with the step's own dropout masks and BatchNorm
                state.
            step: The step number recorded (default: the optimizer's
                iteration count).
        """
        self._check_every_task(gradients, losses)
        task_gradients, target, source_ok = self._step_inputs(
            TaskGradients(
                self.task_names,
                self.shared_variables,
                gradients,
                kernel_mask=self._kernel_mask(),
            ),
            losses,
            losses_at,
            [tf.identity(v) for v in self.shared_variables],
        )
        iterations = self.optimizer.iterations if step is None else step
        return self._meter_for_method().record(
            task_gradients, target, source_ok, iterations
        )

    def _check_every_task(self, gradients, losses):
        """Raises unless `gradients` and `losses` hold every task."""
        missing = [
            t for t in self.task_names if t not in gradients or t not in losses
        ]
        if missing:
            raise ValueError(
                f"`gradients` and `losses` need every task; {missing} are "
                f"missing. Received: gradients for {sorted(gradients)}, "
                f"losses for {sorted(losses)}."
            )

    def _kernel_mask(self):
        """Which shared variables are kernels (rank > 1), for cosine."""
        return [len(v.shape) >= 2 for v in self.shared_variables]

    def _step_inputs(self, task_gradients, losses, losses_at, shared_values):
        """`(task_gradients, Target, [n] source_ok)` of one step, any
        backend: the targets are the step's own losses (global batch),
        usable when finite and non-zero; a source also needs a finite
        gradient."""
        tasks = self.task_names

        def stack(values):
            return _distribute.replica_sum(
                ops.stack([ops.cast(values[t], "float32") for t in tasks])
            )

        before = stack(losses)
        target = Target(
            tasks,
            before,
            affinity_lib.usable_loss(before),
            shared_values,
            lambda values, heads=None: stack(losses_at(list(values))),
        )
        return task_gradients, target, target.ok & task_gradients.finite()

    def forward(self, model: keras.Model, x: Any) -> ForwardPass:
        """The step's forward pass on `x`, replayable for `measure`.

        Call it inside the step's tape where the loop would call
        `model(x, training=True)`; its `outputs` are that call's, and
        `forward.losses_at(task_losses)` is the `losses_at` argument of
        `measure`: the losses at moved shared weights with this step's own
        dropout masks and BatchNorm state, as `TaskAffinityModel` measures
        them (see `ForwardPass`).
        """
        return ForwardPass(model, x, self.shared_variables)

    def end_epoch(self) -> None:
        """Sets `epoch_affinity` (since the last call) and `fit_affinity`."""
        self.affinity_recorder.end_epoch()

    def _meter_for_method(self):
        if self._meter is None:
            self._meter = self.affinity_recorder.make_meter(
                self._lookahead, self.optimizer
            )
        return self._meter

    def _lookahead(self):
        if not self.optimizer.built:
            raise ValueError(
                "The optimizer must be built before measuring: call "
                "`optimizer.build(trainable_variables)` first. Received: "
                f"optimizer={self.optimizer!r} (not built)."
            )
        return make_lookahead(
            self.optimizer, self.shared_variables, tf.distribute.get_strategy()
        )
