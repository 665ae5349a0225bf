"""A small end-to-end run: measure affinity on planted tasks, choose groups.

Generated data with a known answer: two clusters of tasks whose labels come
from two different directions of the input (tasks in a cluster share one,
each with its own 10% of flipped labels), plus one task of pure label
noise. One `fit` of a `TaskAffinityModel` writes
the affinity files; `select_groups` then picks groups for 2 and 3 networks.

Writes in `out_dir`: `affinity/` (AffinityLogger) and `groups.json` (the
groups document, with the planted clusters as an extra entry).
"""

import os
import time

import numpy as np

from tag_keras import select as select_lib
from tag_keras.select import choose


def planted_tasks(samples, seed, features=16, tasks_per_cluster=3):
    """Inputs and binary labels: two clusters of related tasks and noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features)).astype("float32")
    labels, clusters = {}, {}
    for cluster in range(2):
        direction = rng.normal(size=features)
        for k in range(tasks_per_cluster):
            name = f"c{cluster}_t{k}"
            flips = rng.random(samples) < 0.1
            labels[name] = ((x @ direction > 0) ^ flips).astype("int32")
            clusters[name] = cluster
    labels["noise"] = rng.integers(0, 2, size=samples).astype("int32")
    clusters["noise"] = None
    return x, labels, clusters


def run(out_dir, epochs, samples, seed):
    """Trains once, writes `affinity/` and `groups.json`; returns groupings."""
    import keras

    import tag_keras

    keras.utils.set_random_seed(seed)
    x, labels, clusters = planted_tasks(samples, seed)
    inputs = keras.Input((x.shape[1],))
    h = keras.layers.Dense(32, activation="relu", name="shared_1")(inputs)
    h = keras.layers.Dense(32, activation="relu", name="shared_2")(h)
    outputs = {t: keras.layers.Dense(2, name=t)(h) for t in labels}
    model = tag_keras.TaskAffinityModel(
        inputs=inputs, outputs=outputs, affinity_every_n_steps=10
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss={t: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
              for t in labels},
    )
    start = time.perf_counter()
    model.fit(x, labels, batch_size=64, epochs=epochs, verbose=0,
              callbacks=[tag_keras.AffinityLogger(
                  os.path.join(out_dir, "affinity"))])
    print(f"Measured affinity in {time.perf_counter() - start:.1f} s "
          f"({epochs} epochs, every 10 steps).")
    affinity = model.affinity()
    print(affinity.round(4).to_string())
    selection = choose.choose_groups(
        affinity, [2, 3], record={"planted_clusters": clusters})
    for k, grouping in zip(selection.budgets, selection.groupings):
        print(f"\n{k} networks: groups {grouping.groups}, serve "
              f"{grouping.serve}, score {grouping.score:.4f}, "
              f"{'proven optimal' if grouping.optimal else 'not proven'}")
    select_lib.write_groups(os.path.join(out_dir, "groups.json"),
                            selection.document)
    return selection.groupings
