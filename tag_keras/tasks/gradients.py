"""`TaskGradients`: each task's gradient of the shared weights, one value.

Every consumer of per-task gradients (the affinity estimators, the
lookahead, every `tag_keras.mtl` training method) takes this value instead
of `{task: [gradient or None per variable]}`, so that zero-filling,
flattening, unflattening, subset sums and sums over replicas are written
once, here.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence

import keras
from keras import ops

from tag_keras import _distribute
from tag_keras import _tensorflow as tensorflow
from tag_keras._tensorflow import tf


class TaskGradients:
    """Dense per-task gradients of the shared variables.

    Built once per step from one backward pass per task. A task whose loss
    does not depend on a shared variable has a zero gradient for it.
    Gradients are the values passed to the optimizer: a replica's share
    under `tf.distribute`, scaled by a loss-scale optimizer's scale.

    Args:
        tasks: Task names, in matrix order.
        variables: The shared variables, in gradient order.
        gradients: `{task: [gradient or None per shared variable]}`.
        kernel_mask: Optional booleans, one per variable: which variables
            `flat(kernels_only=True)` keeps.
        loss_scale: The factor the gradients carry from a loss-scale
            optimizer or an optimizer's `loss_scale_factor` (1 for none):
            divide by it for the gradients of the losses themselves.

    Example:

    ```python
    g = TaskGradients(("a", "b"), shared, {"a": [ga], "b": [gb]})
    g.sum()                  # the all-task update, one tensor per variable
    g.sum(["a"])             # task a's gradient
    g.global_flat()          # [2, d] float32, summed over replicas
    g.unflatten(vector)      # back to one tensor per variable
    ```
    """

    def __init__(
        self,
        tasks: Sequence[str],
        variables: Sequence,
        gradients: dict,
        kernel_mask: Sequence[bool] | None = None,
        loss_scale: float | tf.Tensor = 1.0,
    ) -> None:
        self.tasks = tuple(tasks)
        self.loss_scale = loss_scale
        self.variables = list(variables)
        self._lists = {
            t: [
                dense_or_zeros(g, v)
                for g, v in zip(gradients[t], self.variables)
            ]
            for t in self.tasks
        }
        self._kernel_mask = kernel_mask
        self._global: dict = {}
        self._arrays: list | None = None

    def __len__(self):
        return len(self.tasks)

    def of(self, task: str) -> list[tf.Tensor]:
        """Task `task`'s gradient: one dense tensor per shared variable."""
        return list(self._lists[task])

    def row(self, i: int | tf.Tensor) -> list[tf.Tensor]:
        """Task number `i`'s gradient. `i` may be a scalar tensor inside a
        `tf.while_loop` over the tasks, which then traces one row, not n;
        call `prepare_rows()` before the loop."""
        if isinstance(i, int):
            return self.of(self.tasks[i])
        if self._arrays is None:
            raise ValueError(
                "TaskGradients.row of a tensor index needs prepare_rows() "
                "first, outside the loop that reads the rows."
            )
        return [array.read(i) for array in self._arrays]

    def prepare_rows(self) -> None:
        """Holds each variable's n gradients in a `tf.TensorArray` (no
        copy of the values), for `row` of a tensor index; made once."""
        if self._arrays is None:
            self._arrays = []
            for k, variable in enumerate(self.variables):
                values = [self._lists[task][k] for task in self.tasks]
                array = tf.TensorArray(
                    values[0].dtype,
                    size=len(values),
                    element_shape=variable.shape,
                )
                for j, value in enumerate(values):
                    array = array.write(j, value)
                self._arrays.append(array)

    def sum(self, tasks: Sequence[str] | None = None) -> list[tf.Tensor]:
        """The sum of `tasks`' gradients (all tasks by default)."""
        tasks = self.tasks if tasks is None else tuple(tasks)
        return [
            add_n([self._lists[t][k] for t in tasks])
            if len(tasks) > 1
            else self._lists[tasks[0]][k]
            for k in range(len(self.variables))
        ]

    def weighted_sum(self, weights: tf.Tensor) -> list[tf.Tensor]:
        """`Σ_t weights[t] g_t`, `weights` an `[n]` tensor (a group's
        0/1 membership gives the sum of its tasks' gradients)."""
        return [
            add_n(
                [
                    ops.cast(weights[i], g[k].dtype) * g[k]
                    for i, g in enumerate(self._lists.values())
                ]
            )
            for k in range(len(self.variables))
        ]

    def flat(self, kernels_only: bool = False) -> tf.Tensor:
        """float32 `[n, d]` of this replica's values, one row per task."""
        return ops.stack(
            [self.flatten(self._lists[t], kernels_only) for t in self.tasks]
        )

    def global_flat(self, kernels_only: bool = False) -> tf.Tensor:
        """float32 `[n, d]` summed over replicas: the global-batch values."""
        if kernels_only not in self._global:
            self._global[kernels_only] = _distribute.replica_sum(
                self.flat(kernels_only=kernels_only)
            )
        return self._global[kernels_only]

    def flatten(
        self, per_variable: Sequence[tf.Tensor], kernels_only: bool = False
    ) -> tf.Tensor:
        """One float32 vector of a list shaped like the shared variables."""
        parts = [
            ops.reshape(ops.cast(g, "float32"), [-1])
            for k, g in enumerate(per_variable)
            if not kernels_only or self._is_kernel(k)
        ]
        return ops.concatenate(parts, axis=0)

    def unflatten(self, vector: tf.Tensor) -> list[tf.Tensor]:
        """A `[d]` vector as one tensor per shared variable (their dtypes)."""
        out, start = [], 0
        for variable in self.variables:
            size = math.prod(variable.shape)
            part = ops.reshape(vector[start : start + size], variable.shape)
            out.append(ops.cast(part, variable.dtype))
            start += size
        return out

    def replica_share(self, global_vector: tf.Tensor) -> tf.Tensor:
        """A global-batch `[d]` update as this replica's share, unflattened.

        The optimizer sums the replicas' gradients, so a method that
        computes the update from `global_flat()` returns its share.
        """
        return self.unflatten(global_vector / _distribute.num_replicas())

    def finite(self) -> tf.Tensor:
        """`[n]` booleans: the task's gradient is finite on every replica."""
        flags = [
            ops.all(
                ops.stack([ops.all(ops.isfinite(g)) for g in self._lists[t]])
            )
            for t in self.tasks
        ]
        return _distribute.replica_all(ops.stack(flags))

    def _is_kernel(self, k):
        return self._kernel_mask is None or self._kernel_mask[k]


def dense_or_zeros(gradient, variable):
    """`gradient` as a dense tensor; zeros of the variable's shape for None."""
    if gradient is None:
        return ops.zeros(variable.shape, variable.dtype)
    if tensorflow.is_loaded() and isinstance(gradient, tf.IndexedSlices):
        return tf.convert_to_tensor(gradient)
    return gradient


def add_n(values):
    """The sum of same-shaped tensors (`tf.add_n` on TensorFlow)."""
    if keras.backend.backend() == "tensorflow":
        return tf.add_n(values)
    return functools.reduce(operator.add, values)
