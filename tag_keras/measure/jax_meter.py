"""`AffinityMeter` on Keras's JAX backend: a functional `measure`.

In a JAX loop the step is a pure function of its state, so the meter is
too, in the spirit of optax: `init()` gives the measurement's state (a
pytree of arrays), `measure(state, ...)` returns the next one and writes
nothing, and the loop threads it through its jitted step beside the
model's and the optimizer's states. `fold(state)` adds the float32 sums
the state holds into the meter's float64 sums on the host and gives back
a fresh state; `affinity()`, `AffinityLogger` and the other readouts read
what was folded.

docs/guides/backends.md has a whole loop, run by CI.

Why a state and a fold: JAX keeps float64 arrays in float32 unless its
process-wide x64 flag is set, which a library must not set. The device
sums are float32, so fold at least once an epoch (each fold is a copy of a
few `[n, n]` arrays to the host); fold every step to have every step's
matrix for `AffinityLogger`'s steps file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import numpy as np
from keras import ops

from tag_keras import _keras_private
from tag_keras._errors import InputError
from tag_keras.measure import affinity as affinity_lib
from tag_keras.measure import estimators
from tag_keras.measure import jax_step
from tag_keras.measure import sources as sources_lib
from tag_keras.measure.custom_loop import AffinityMeter
from tag_keras.measure.jax_step import JaxLookahead
from tag_keras.measure.jax_step import JaxTaskGradients


class Sums(NamedTuple):
    """Running sums of one table (`[rows, n]` float32 arrays)."""

    sums: Any
    squares: Any
    counts: Any
    skips: Any


class MeterState(NamedTuple):
    """What `AffinityMeter.measure` threads through a JAX loop (a pytree).

    Attributes:
        tasks: `Sums` of the `[n, n]` single-task matrix since the last
            fold.
        last: `[n, n]` matrix of the last measured step (NaN: skipped).
        last_step: That step's number (-1: none since the last fold).
        groups: `Sums` of the `[P, n]` group sources, or None.
    """

    tasks: Sums
    last: Any
    last_step: Any
    groups: Sums | None


def _zeros(rows, n):
    return Sums(*(ops.zeros((rows, n), "float32") for _ in range(4)))


def _added(table, z, source_ok, target_ok):
    """`table` plus the `[rows, n]` values `z` (see `RunningSums`)."""
    valid = affinity_lib.valid_pairs(z, source_ok, target_ok)
    kept = ops.where(valid, z, ops.zeros_like(z))
    counted = ops.cast(valid, "float32")
    return Sums(
        table.sums + kept,
        table.squares + kept * kept,
        table.counts + counted,
        table.skips + (1.0 - counted),
    ), valid


class JaxAffinityMeter(AffinityMeter):
    """`AffinityMeter` on JAX (made by `AffinityMeter(...)` there).

    Construction, readouts and `end_epoch` are `AffinityMeter`'s; group
    sources are the fixed ones (`affinity_sources`), random draws are not
    ported (the step number is traced inside the loop's `jit`).
    """

    def _check_settings(self):
        if self.affinity_settings.random_subsets:
            raise InputError(
                "On Keras's JAX backend, AffinityMeter measures the fixed "
                "group sources (affinity_sources=) but not random draws. "
                "Received: affinity_random_subsets="
                f"{self.affinity_settings.random_subsets}"
            )

    def init(self) -> MeterState:
        """A fresh state: zero sums, no last step."""
        n = len(self.task_names)
        groups = self.group_sources
        return MeterState(
            tasks=_zeros(n, n),
            last=ops.full((n, n), np.nan, "float32"),
            last_step=ops.convert_to_tensor(-1, "int32"),
            groups=None if groups is None else _zeros(len(groups), n),
        )

    def measure(  # type: ignore[override]  # JAX: functional, as Keras's
        # own JAX `train_step(state, data)` is beside TensorFlow's.
        self,
        state: MeterState,
        gradients: dict,
        losses: dict,
        losses_at: Callable[[list], dict],
        *,
        trainable_values: list,
        optimizer_values: list,
        step: Any = None,
    ) -> MeterState:
        """The state after measuring one step; pure (jit it in the step).

        Args:
            state: The current `MeterState` (`init()`, or the last
                `measure` or `fold`).
            gradients: `{task: [gradient per shared variable]}` on this
                batch, in the order of the meter's `shared_variables`.
            losses: `{task: scalar loss}` on this batch.
            losses_at: `values -> {task: loss}`: the tasks' losses on the
                same batch with the shared variables at `values` (one per
                shared variable) and everything else as in this step
                (replay the step's `stateless_call` from the same
                non-trainable state, so dropout draws the same masks).
            trainable_values: The values of the variables the optimizer
                was built with, in its order (the model's
                `trainable_variables` when built on them): the lookahead
                is the optimizer's `stateless_apply` on them.
            optimizer_values: The optimizer's variables' values
                (`optimizer.variables` order) this step.
            step: The step number recorded (default: the optimizer's
                iteration count in `optimizer_values`).

        Returns:
            The next `MeterState`. Nothing is written: fold it into the
            meter (`fold`) to read the matrices.
        """
        self._check_every_task(gradients, losses)
        shared = self._shared_indices()
        trainable = list(trainable_values)
        optimizer_values = list(optimizer_values)
        shared_values = [trainable[k] for k in shared]
        task_gradients, target, source_ok = self._step_inputs(
            JaxTaskGradients(
                self.task_names,
                shared_values,
                gradients,
                kernel_mask=self._kernel_mask(),
            ),
            losses,
            losses_at,
            shared_values,
        )
        settings = self.affinity_settings
        estimator = estimators.make_estimator(
            settings.method,
            lambda: JaxLookahead(
                self.optimizer, trainable, optimizer_values, shared
            ),
            optimizer=self.optimizer,
            scale_by_learning_rate=settings.scale_by_learning_rate,
            kernels_only=settings.cosine_kernels_only,
            step=settings.lookahead_step,
        )
        z = ops.cast(estimator.matrix(task_gradients, target), "float32")
        table, valid = _added(state.tasks, z, source_ok, target.ok)
        if step is None:
            step = optimizer_values[
                jax_step.index(
                    self.optimizer.variables, self.optimizer.iterations
                )
            ]
        groups = state.groups
        if groups is not None:
            indices = np.asarray(self.group_sources.fixed, np.int32)
            rows, group_ok = sources_lib.group_matrix(
                self.group_sources.masks,
                ops.convert_to_tensor(indices),
                estimator,
                task_gradients,
                target,
                source_ok,
            )
            groups, _ = _added(groups, rows, group_ok, target.ok)
        return MeterState(
            tasks=table,
            last=ops.where(valid, z, ops.full_like(z, np.nan)),
            last_step=ops.cast(step, "int32"),
            groups=groups,
        )

    def fold(self, state: MeterState) -> MeterState:
        """Adds `state`'s sums into the meter's float64 sums on the host
        (what `affinity()` and `AffinityLogger` read); returns a fresh
        state (`init()`) to go on with."""
        recorder = self.affinity_recorder
        recorder.state.add(*(np.asarray(a) for a in state.tasks))
        step = int(np.asarray(state.last_step))
        if step >= 0:
            recorder.state.set_last(np.asarray(state.last), step)
        if state.groups is not None:
            recorder.group_state.add(*(np.asarray(a) for a in state.groups))
        return self.init()

    def _shared_indices(self):
        """Where the shared variables are in the optimizer's list."""
        if not self.optimizer.built:
            raise ValueError(
                "The optimizer must be built before measuring: call "
                "`optimizer.build(trainable_variables)` first. Received: "
                f"optimizer={self.optimizer!r} (not built)."
            )
        built = _keras_private.optimizer_trainables(self.optimizer)
        indices = []
        for variable in self.shared_variables:
            k = jax_step.position(built, variable)
            if k is None:
                raise ValueError(
                    f"The shared variable {variable.path!r} is not among "
                    "the variables the optimizer was built with; build it "
                    "on a list that holds every shared variable. Received: "
                    f"{len(built)} variables."
                )
            indices.append(k)
        return indices
