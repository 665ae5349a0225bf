import sys, collections
tree = sys.argv[1]; sys.path.insert(0, tree)
import keras, numpy as np, tensorflow as tf, tag_keras
print(tag_keras.__file__)
keras.utils.set_random_seed(0)
names = [f"t{i}" for i in range(3)]
inputs = keras.Input((4,))
trunk = keras.layers.Dense(8, activation="relu")(inputs)
model = tag_keras.TaskAffinityModel(inputs=inputs, outputs={n: keras.layers.Dense(1, name=n)(trunk) for n in names}, affinity_every_n_steps=1)
model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss={n: "mse" for n in names})
x = np.ones((8, 4), "float32"); y = {n: np.random.default_rng(1).normal(size=(8, 1)).astype("float32") for n in names}
model.train_on_batch(x, y)
step = tf.function(lambda x, y: model.step((x, y), measure=True))
g = step.get_concrete_function(x, y).graph.as_graph_def()
nodes = list(g.node) + [n for f in g.library.function for n in f.node_def]
c = collections.Counter(n.op for n in nodes)
print("TOTAL", len(nodes))
for op, k in sorted(c.items()): print(op, k)
