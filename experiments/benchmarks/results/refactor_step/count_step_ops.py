"""Node count and op histogram of a 3-task measured step, from a checkout.

Usage: python count_step_ops.py TREE   (run from inside TREE)
"""
import collections
import sys


def main(tree):
    sys.path.insert(0, tree)
    import keras
    import numpy as np
    import tensorflow as tf

    import tag_keras

    print(tag_keras.__file__)
    keras.utils.set_random_seed(0)
    names = [f"t{i}" for i in range(3)]
    inputs = keras.Input((4,))
    trunk = keras.layers.Dense(8, activation="relu")(inputs)
    model = tag_keras.TaskAffinityModel(
        inputs=inputs,
        outputs={n: keras.layers.Dense(1, name=n)(trunk) for n in names},
        affinity_every_n_steps=1)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss={n: "mse" for n in names})
    x = np.ones((8, 4), "float32")
    rng = np.random.default_rng(1)
    y = {n: rng.normal(size=(8, 1)).astype("float32") for n in names}
    model.train_on_batch(x, y)
    step = tf.function(lambda x, y: model.step((x, y), measure=True))
    graph = step.get_concrete_function(x, y).graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function
                                for n in f.node_def]
    print("TOTAL", len(nodes))
    for op, count in sorted(collections.Counter(n.op for n in nodes).items()):
        print(op, count)


if __name__ == "__main__":
    main(sys.argv[1])
