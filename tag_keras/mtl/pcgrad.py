"""PCGrad: projecting conflicting gradients (Yu et al., 2020)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import keras

from tag_keras._tensorflow import tf
from tag_keras.mtl.base import WeightedMethod
from tag_keras.mtl.base import largest_entry

if TYPE_CHECKING:  # for annotations only
    from tag_keras.mtl.base import TrainingMethod


@keras.saving.register_keras_serializable(package="tag_keras")
class PCGrad(WeightedMethod):
    """Removes the conflicting part of each task's shared gradient.

    For every task `i`, in a random order of the other tasks `j`: when the
    (already projected) `g_i` has a negative inner product with the original
    `g_j`, `g_i` loses its component along `g_j`. The shared update is the
    sum of the projected gradients; task-specific weights update as usual.
    The inner products are over all shared variables together.

    Needs one backward pass per task on every step.

    Args:
        loss_weighting: Optional method whose `weight_losses` weights the
            task losses before their gradients are projected, e.g.
            `UncertaintyWeights()` (the original release's UW-PCGrad).
        shuffle: Visit the other tasks in a fresh random order for each task
            and step (the published rule); False keeps task order.
        seed: Seed of that order.
        **kwargs: Layer arguments such as `name`.
    """

    needs_task_gradients = True

    def __init__(
        self,
        loss_weighting: TrainingMethod | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(loss_weighting, **kwargs)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def combine(self, gradients, context):
        del context
        orders = random_orders(
            len(gradients), self.seed_generator, self.shuffle
        )
        return projected_sum(gradients, orders)

    def get_config(self):
        return {
            **super().get_config(),
            "shuffle": self.shuffle,
            "seed": self.seed,
        }


def random_orders(n, seed_generator, shuffle=True):
    """For each of `n` tasks, the other tasks in the order PCGrad visits."""
    orders = []
    for i in range(n):
        others = tf.constant([j for j in range(n) if j != i], tf.int32)
        if shuffle and n > 2:
            seed = tf.cast(seed_generator.next(), tf.int64)
            others = tf.random.experimental.stateless_shuffle(others, seed)
        orders.append(others)
    return orders


def projected_sum(gradients, orders):
    """PCGrad's shared update: the sum of the projected task gradients.

    Under tf.distribute the global-batch gradients are projected, and this
    replica's share of the sum is returned (the optimizer sums replicas).

    Args:
        gradients: The step's `TaskGradients`.
        orders: From `random_orders`, in task order.
    """
    total = tf.reduce_sum(
        project_conflicts(gradients.global_flat(), orders), axis=0
    )
    return gradients.replica_share(total)


def project_conflicts(flat, orders):
    """Projected gradients, one row per task.

    Args:
        flat: `[n, d]` tensor, row `i` the gradient of task `i`.
        orders: For each `i`, an int tensor of the other tasks' rows in the
            order to visit them.
    """
    # Projections are scale-free: work at the largest entry's scale, so
    # that squared norms neither overflow (gradients near 1e19) nor
    # underflow (near 1e-20) in float32.
    scale = largest_entry(flat)
    flat = flat / scale
    rows = []
    for i, order in enumerate(orders):
        g = flat[i]
        others = tf.gather(flat, order)
        for k in range(int(order.shape[0])):
            other = others[k]
            dot = tf.reduce_sum(g * other)
            norm = tf.reduce_sum(other * other)
            conflict = tf.logical_and(dot < 0, norm > 0)
            safe = tf.where(norm > 0, norm, tf.ones_like(norm))
            g = tf.where(conflict, g - dot / safe * other, g)
        rows.append(g)
    return tf.stack(rows) * scale
