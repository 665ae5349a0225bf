"""A measured step traces about linearly in the number of tasks.

Each affinity row is a lookahead through the whole model (every head), so
rows unrolled in Python made the traced graph, its tracing time and its
memory grow with n². The rows now run in a `tf.while_loop`; these tests
count graph nodes (never time) and check the loop's rows against the
unrolled ones.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tag_keras
from tag_keras.measure import rows as rows_lib
from tag_keras.tasks.gradients import TaskGradients


def _nodes_of_measured_step(num_tasks, method="lookahead"):
    keras.utils.set_random_seed(0)
    names = [f"t{i}" for i in range(num_tasks)]
    inputs = keras.Input((4,))
    trunk = keras.layers.Dense(8, activation="relu")(inputs)
    model = tag_keras.TaskAffinityModel(
        inputs=inputs,
        outputs={n: keras.layers.Dense(1, name=n)(trunk) for n in names},
        affinity_every_n_steps=1, affinity_method=method)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss={n: "mse" for n in names})
    x = np.ones((8, 4), "float32")
    y = {n: np.random.default_rng(1).normal(size=(8, 1)).astype("float32")
         for n in names}
    model.train_on_batch(x, y)  # builds the optimizer and the state
    step = tf.function(lambda x, y: model.step((x, y), measure=True))
    graph = step.get_concrete_function(x, y).graph.as_graph_def()
    return len(graph.node) + sum(len(f.node_def)
                                 for f in graph.library.function)


@pytest.mark.parametrize("method", ["lookahead", "first_order"])
def test_the_measured_step_graph_grows_linearly_with_the_tasks(method):
    counts = [_nodes_of_measured_step(n, method) for n in (3, 6, 9)]
    first, second = counts[1] - counts[0], counts[2] - counts[1]
    # Unrolled rows added ~n nodes per head per row: the second difference
    # was a third of the first at these sizes. Linear: about zero.
    assert abs(second - first) <= 0.05 * first, counts


def _gradients(num_tasks, seed=0):
    rng = np.random.default_rng(seed)
    variables = [tf.Variable(np.zeros((3, 2), "float32")),
                 tf.Variable(np.zeros((2,), "float32"))]
    tasks = [f"t{i}" for i in range(num_tasks)]
    values = {t: [tf.constant(rng.normal(size=v.shape), tf.float32)
                  for v in variables] for t in tasks}
    return TaskGradients(tasks, variables, values), values


def _row(gradients):
    return lambda i: tf.stack([tf.reduce_sum(g ** 2) + tf.cast(k, tf.float32)
                               for k, g in enumerate(gradients.row(i))])


def test_rows_in_the_loop_equal_the_rows_unrolled():
    gradients, values = _gradients(4)

    @tf.function
    def in_loop():
        gradients.prepare_rows()
        return rows_lib.one_at_a_time(4, _row(gradients))

    expected = np.array([[np.sum(np.square(values[t][0])),
                          np.sum(np.square(values[t][1])) + 1]
                         for t in gradients.tasks])
    np.testing.assert_allclose(in_loop(), expected, rtol=1e-6)
    # Eagerly the rows are unrolled (tensor indices are not needed).
    np.testing.assert_allclose(
        rows_lib.one_at_a_time(4, _row(_gradients(4)[0])), expected,
        rtol=1e-6)


def test_a_tensor_row_needs_its_rows_prepared_and_a_loop_needs_rows():
    gradients, _ = _gradients(2)
    with pytest.raises(ValueError, match="prepare_rows"):
        gradients.row(tf.constant(0))
    with pytest.raises(ValueError, match="count=0"):
        rows_lib.one_at_a_time(0, lambda i: tf.constant(0.0))


def test_group_sums_equal_the_sums_of_the_tasks():
    gradients, values = _gradients(3)
    summed = gradients.weighted_sum(tf.constant([1.0, 0.0, 1.0]))
    for k in range(2):
        np.testing.assert_allclose(
            summed[k], values["t0"][k] + values["t2"][k], rtol=1e-6)
