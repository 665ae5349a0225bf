"""A tiny user model and data for the `tag-train` tests (importable as
`tests.train_module` and runnable as `train_module.py`)."""

import os
import sys

import keras
import numpy as np

TASKS = ("a", "b", "c")


def build(tasks, regression=()):
    """A shared dense layer and one logit head per task (a linear head
    with the mean squared error for the tasks in `regression`)."""
    inputs = keras.Input((4,))
    z = keras.layers.Dense(8, activation="relu", name="shared")(inputs)
    outputs = {t: keras.layers.Dense(1, name=t)(z) for t in tasks}
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss={
        t: "mse" if t in regression else keras.losses.BinaryCrossentropy(
            from_logits=True) for t in tasks})
    return model


def build_with_regression(tasks):
    """As `build`, with task c a regression head (mean squared error)."""
    return build(tasks, regression=("c",))


def _split(rng, n):
    x = rng.normal(size=(n, 4)).astype("float32")
    y = {"a": (x[:, 0] > 0).astype("float32"),
         "b": (x[:, 0] + x[:, 1] > 0).astype("float32"),
         "c": (rng.random(n) > 0.5).astype("float32")}
    y["c"][:3] = np.nan  # Partial labels are allowed.
    return x, y


def data():
    """Train, validation and test arrays; task c has missing labels."""
    rng = np.random.default_rng(0)
    return {"train": _split(rng, 48), "validation": _split(rng, 24),
            "test": _split(rng, 24)}


def no_validation():
    return {"train": _split(np.random.default_rng(0), 8)}


def _changed(split, change):
    """`data()` with `change(x, y)` -> `(x, y)` applied to `split`."""
    splits = data()
    x, y = splits[split]
    splits[split] = change(x, dict(y))
    return splits


def short_labels():
    """Task a's training labels one shorter than the inputs."""
    return _changed("train", lambda x, y: (x, {**y, "a": y["a"][:-1]}))


def wide_labels():
    """Task a's training labels three per example, for one logit."""
    return _changed("train", lambda x, y: (x, {**y, "a": np.stack(
        [y["a"]] * 3, axis=1)}))


def one_validation_example():
    return _changed("validation", lambda x, y: (x[:1], {
        t: v[:1] for t, v in y.items()}))


def unlabelled_validation():
    """Task b has no labelled validation example."""
    return _changed("validation", lambda x, y: (x, {
        **y, "b": np.full_like(y["b"], np.nan)}))


def spaced_names():
    """Task a renamed "a b"."""
    splits = data()
    for name, (x, y) in splits.items():
        y = dict(y)
        y["a b"] = y.pop("a")
        splits[name] = (x, y)
    return splits


def drops_a_head(tasks):
    """A model function that forgets the last task of small groups."""
    return build(tasks if len(tasks) == len(TASKS) else tasks[:-1] or tasks)


class Subclassed(keras.Model):
    """A subclassed model: no input shape until it is called."""

    def __init__(self, tasks):
        super().__init__()
        self.tasks = list(tasks)
        self.shared = keras.layers.Dense(8, activation="relu")
        self.heads = [keras.layers.Dense(1) for _ in self.tasks]

    def call(self, x):
        z = self.shared(x)
        return {t: head(z) for t, head in zip(self.tasks, self.heads)}


def subclassed(tasks):
    """A compiled subclassed model, built only by its first call."""
    model = Subclassed(tasks)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss={
        t: keras.losses.BinaryCrossentropy(from_logits=True) for t in tasks})
    return model


def keyed_heads(tasks):
    """Outputs keyed by task, the head layers named head_0, head_1, ..."""
    inputs = keras.Input((4,))
    z = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, {t: keras.layers.Dense(1, name=f"head_{i}")(
        z) for i, t in enumerate(tasks)})
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss={
        t: keras.losses.BinaryCrossentropy(from_logits=True) for t in tasks})
    return model


if __name__ == "__main__":
    # Trains the groups named on the command line into a directory, and
    # dies (SIGKILL) right after the network named by KILL_AFTER is stored.
    from tag_keras import train

    directory, kill_after = sys.argv[1], int(os.environ.get("KILL_AFTER", 0))

    def log(line):
        print(line, flush=True)
        if kill_after and line.startswith(f"[{kill_after}/"):
            os.kill(os.getpid(), 9)

    trainer = train.GroupTrainer(build, data(), seeds=[0, 1],
                                 fit_kwargs={"epochs": 1}, batch_size=16,
                                 directory=directory, log=log)
    trainer.train([g.split(",") for g in sys.argv[2:]])


def streamed():
    """`data()` as batched `tf.data.Dataset`s (cannot be pickled)."""
    import tensorflow as tf

    return {split: tf.data.Dataset.from_tensor_slices(pair).batch(16)
            for split, pair in data().items()}
