"""PCGrad: projecting conflicting gradients (Yu et al., 2020)."""

import keras
import tensorflow as tf

from tag_keras._distribute import num_replicas
from tag_keras._distribute import replica_sum
from tag_keras.mtl.base import WeightedStrategy


@keras.saving.register_keras_serializable(package="tag_keras")
class PCGrad(WeightedStrategy):
    """Removes the conflicting part of each task's shared gradient.

    For every task `i`, in a random order of the other tasks `j`: when the
    (already projected) `g_i` has a negative inner product with the original
    `g_j`, `g_i` loses its component along `g_j`. The shared update is the
    sum of the projected gradients; task-specific weights update as usual.
    The inner products are over all shared variables together.

    Needs one backward pass per task on every step.

    Args:
        loss_weighting: Optional strategy whose `weight_losses` weights the
            task losses before their gradients are projected, e.g.
            `UncertaintyWeights()` (the original release's UW-PCGrad).
        shuffle: Visit the other tasks in a fresh random order for each task
            and step (the published rule); False keeps task order.
        seed: Seed of that order.
        **kwargs: Layer arguments such as `name`.
    """

    needs_task_gradients = True

    def __init__(self, loss_weighting=None, shuffle=True, seed=None,
                 **kwargs):
        super().__init__(loss_weighting, **kwargs)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def combine(self, task_gradients):
        orders = random_orders(len(task_gradients), self.seed_generator,
                               self.shuffle)
        return projected_sum(task_gradients, orders)

    def get_config(self):
        return {**super().get_config(), "shuffle": self.shuffle,
                "seed": self.seed}


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


def projected_sum(task_gradients, orders):
    """PCGrad's shared update: the sum of the projected task gradients.

    Args:
        task_gradients: `{task: [gradient or None per shared variable]}`.
        orders: From `random_orders`, in the dict's task order.
    """
    tasks = list(task_gradients)
    flat, shapes = _flatten(task_gradients, tasks)
    # Under tf.distribute: project the global-batch gradients, and return
    # one replica's share, as the optimizer sums over replicas.
    flat = replica_sum(flat)
    total = tf.reduce_sum(project_conflicts(flat, orders), axis=0)
    return _unflatten(total / num_replicas(), shapes)


def project_conflicts(flat, orders):
    """Projected gradients, one row per task.

    Args:
        flat: `[n, d]` tensor, row `i` the gradient of task `i`.
        orders: For each `i`, an int tensor of the other tasks' rows in the
            order to visit them.
    """
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
    return tf.stack(rows)


def _flatten(task_gradients, tasks):
    """`[n, d]` gradients (None as zeros) and each variable's shape."""
    lists = [task_gradients[t] for t in tasks]
    shapes = []
    for per_variable in zip(*lists):
        present = next((g for g in per_variable if g is not None), None)
        shapes.append(None if present is None else present.shape)
    rows = []
    for grads in lists:
        parts = []
        for g, shape in zip(grads, shapes):
            if shape is None:
                continue
            if g is None:
                g = tf.zeros(shape, _dtype(lists))
            parts.append(tf.reshape(tf.convert_to_tensor(g), [-1]))
        rows.append(tf.concat(parts, 0))
    return tf.stack(rows), shapes


def _unflatten(vector, shapes):
    out, start = [], 0
    for shape in shapes:
        if shape is None:
            out.append(None)
            continue
        size = shape.num_elements()
        out.append(tf.reshape(vector[start:start + size], shape))
        start += size
    return out


def _dtype(lists):
    for grads in lists:
        for g in grads:
            if g is not None:
                return g.dtype
    return tf.float32
