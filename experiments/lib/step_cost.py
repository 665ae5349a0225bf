"""The models, batches and timers of the step-cost benchmarks
(`affinity_benchmark`, `backends`): what a measured step costs against a
plain one and against its bound `F + n B + n F`.
"""

import time


def build_model(model_name, tasks, every, method="lookahead"):
    """`(compiled model, task names)`: the benchmark MLP ("mlp": two
    512-unit layers) or the CelebA encoder ("celeba"), a 2-class head per
    task; a plain `keras.Model` when `every` is None, else a
    `TaskAffinityModel` measuring every `every` steps with `method`."""
    import keras

    import tag_keras

    keras.utils.set_random_seed(0)
    if model_name == "celeba":
        inputs = keras.Input((64, 64, 3))
        h = keras.layers.Conv2D(64, 3, padding="same", use_bias=False)(inputs)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
        h = keras.layers.MaxPool2D(3, strides=2, padding="same")(h)
        r = keras.layers.Conv2D(64, 3, padding="same", use_bias=False)(h)
        r = keras.layers.BatchNormalization()(r)
        r = keras.layers.ReLU()(r)
        r = keras.layers.Conv2D(64, 3, padding="same", use_bias=False)(r)
        r = keras.layers.BatchNormalization()(r)
        h = keras.layers.ReLU()(keras.layers.Add()([h, r]))
        h = keras.layers.AveragePooling2D(2)(h)
        h = keras.layers.Flatten()(h)
    else:
        inputs = keras.Input((256,))
        h = keras.layers.Dense(512, activation="relu")(inputs)
        h = keras.layers.Dense(512, activation="relu")(h)
    names = [f"t{i}" for i in range(tasks)]
    outputs = {n: keras.layers.Dense(2, name=n)(h) for n in names}
    model_cls = keras.Model if every is None else tag_keras.TaskAffinityModel
    extra = {} if every is None else {
        "affinity_every_n_steps": every, "affinity_method": method}
    model = model_cls(inputs=inputs, outputs=outputs, **extra)
    model.compile(
        optimizer=keras.optimizers.SGD(5e-4, momentum=0.9),
        loss={n: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
              for n in names},
    )
    return model, names


def batch(model_name, names, batch_size, steps=1):
    """`(x, {task: labels})` of `steps` batches, seeded."""
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (64, 64, 3) if model_name == "celeba" else (256,)
    n = batch_size * steps
    x = rng.random((n, *shape), dtype=np.float32)
    y = {t: rng.integers(0, 2, size=(n,)).astype("int32") for t in names}
    return x, y


def mean_seconds(fn, repeats):
    """Mean seconds of `fn()` over `repeats` calls, after two warm-up
    calls (tracing, compiling, first-call allocations)."""
    fn()
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def forward_and_backward(model, names, x, y, repeats):
    """`(F, B)` seconds on one batch: a forward pass in training mode and
    one task's backward pass (a forward-and-backward minus F), each
    compiled as the backend compiles (a `tf.function`, a `jax.jit`)."""
    import keras

    task = names[0]
    if keras.backend.backend() == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        other = [v.value for v in model.non_trainable_variables]

        def outputs(values, x):
            return model.stateless_call(values, other, x, training=True)[0]

        def loss(values, x, labels):
            return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
                labels, outputs(values, x)[task], from_logits=True))

        forward = jax.jit(outputs)
        backward = jax.jit(jax.grad(loss))
        t_forward = mean_seconds(
            lambda: jax.block_until_ready(forward(trainable, x)), repeats)
        t_both = mean_seconds(
            lambda: jax.block_until_ready(backward(trainable, x, y[task])),
            repeats)
        return t_forward, t_both - t_forward
    import tensorflow as tf

    @tf.function
    def forward_tf(x):
        return model(x, training=True)

    @tf.function
    def backward_tf(x, y):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = tf.reduce_mean(
                tf.keras.losses.sparse_categorical_crossentropy(
                    y[task], out[task], from_logits=True))
        return tape.gradient(loss, model.trainable_variables)

    t_forward = mean_seconds(lambda: forward_tf(x), repeats)
    t_both = mean_seconds(lambda: backward_tf(x, y), repeats)
    return t_forward, t_both - t_forward
