"""The diagnostics under MirroredStrategy (tests only; run it through
`tests.logical_cpus` with two logical CPUs). Prints one JSON line: each
measure on the distributed model and on a copy built without a strategy.
"""

import json

import keras
import numpy as np
import tensorflow as tf

from tag_keras import diagnostics


def _model():
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, activation="tanh", name="trunk")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    model = keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(h),
                                 "b": keras.layers.Dense(3, name="b")(h)})
    model.compile("sgd", loss={
        "a": keras.losses.BinaryCrossentropy(from_logits=True),
        "b": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    return model


def _measures(model, data):
    conflict = diagnostics.gradient_conflict(model, data, batch_size=16)
    return {"conflict": conflict["cosine_to_total"].tolist(),
            "sharpness": diagnostics.sharpness(model, data, "a", steps=3),
            "fisher": diagnostics.fisher_trace(model, data, "b"),
            "coherence": diagnostics.gradient_coherence(model, data, "b")}


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 3)).astype("float32")
    y = {"a": (x[:, :1] > 0).astype("float32"),
         "b": rng.integers(0, 3, size=48)}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        distributed = _model()
    distributed.fit(x, y, epochs=1, batch_size=16, verbose=0)
    plain = _model()
    plain.set_weights(distributed.get_weights())
    print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                      "distributed": _measures(distributed, (x, y)),
                      "plain": _measures(plain, (x, y))}))


if __name__ == "__main__":
    main()
