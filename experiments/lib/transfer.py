"""The information-transfer experiments (Wu, Zhang and Ré, ICLR 2020).

Four experiments, each a function writing `<name>.csv` (one row per
network and seed; a rerun skips rows already there) and returning a
summary table:

* `similarity`: synthetic source/target pairs (section 2.2) whose
  covariances overlap more or less, and a rotated pair: the target's test
  loss alone (STL), trained with the source (MTL) and with covariance
  alignment (MTL+align), against `covariance_similarity` of the inputs.
* `label_noise`: the digits tasks with a share of one task's training and
  validation labels flipped: test error of the clean tasks under equal
  weights (MTL), uncertainty weights (UW) and SVD task weights (SVD).
* `capacity`: digits, the all-task network against one network per task
  while the shared width sweeps.

`experiments.lib.tables.markdown` renders the summaries.
"""

import dataclasses
import os

import numpy as np
import pandas as pd

from experiments.lib import tables
from experiments.lib import training


# ---------------------------------------------------------- similarity

#: Conditions of the similarity experiment: (name, task_pair options).
CONDITIONS = (
    ("overlap 1.00", {"overlap": 1.0}),
    ("overlap 0.75", {"overlap": 0.75}),
    ("overlap 0.50", {"overlap": 0.5}),
    ("overlap 0.25", {"overlap": 0.25}),
    ("overlap 0.00", {"overlap": 0.0}),
    ("rotated", {"rotate": True}),
)
PAIR_METHODS = ("STL", "MTL", "MTL+align")


def _pair_model(d, width, kind, tasks, align):
    import keras

    from tag_keras import transfer

    activation = None if kind == "linear" else "relu"
    shared = keras.layers.Dense(width, activation=activation, name="shared")
    inputs, outputs = {}, {}
    for task in tasks:
        x = inputs[f"x_{task}"] = keras.Input((d,), name=f"x_{task}")
        if align:
            x = transfer.CovarianceAlignment(name=f"align_{task}")(x)
        head = keras.layers.Dense(1, name=task)
        outputs[task] = head(shared(x))
    model = keras.Model(inputs, outputs)
    loss = ("binary_crossentropy" if kind == "logistic" else "mse")
    model.compile(keras.optimizers.Adam(1e-2),
                  loss={t: (keras.losses.BinaryCrossentropy(from_logits=True)
                            if kind == "logistic" else loss)
                        for t in tasks})
    return model


def train_pair(source, target, method, *, kind="linear", width=10,
               epochs=60, batch_size=100, seed=0):
    """The target's test loss (error for logistic) under `method`."""
    import keras

    from tag_keras import transfer

    keras.utils.set_random_seed(seed)
    d = source.x_train.shape[1]
    # The target's examples repeated to the source's count, for every
    # method: one input per task, batches that hold both, and STL makes
    # as many steps on the target's examples as MTL does.
    index = np.resize(np.arange(len(target.y_train)), len(source.y_train))
    if method == "STL":
        tasks = ("target",)
        x, y = {"x_target": target.x_train[index]}, {
            "target": target.y_train[index]}
    else:
        tasks = ("source", "target")
        x = {"x_source": source.x_train, "x_target": target.x_train[index]}
        y = {"source": source.y_train, "target": target.y_train[index]}
    model = _pair_model(d, width, kind, tasks, method == "MTL+align")
    callbacks = []
    if method == "MTL+align":
        callbacks = [transfer.AlignmentSchedule(
            ["align_source", "align_target"], ["shared"], period=2)]
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0,
              callbacks=callbacks)
    test_x = {f"x_{t}": target.x_test for t in tasks}
    predictions = model.predict(test_x, verbose=0, batch_size=1000)["target"]
    predictions = predictions[:, 0]
    if kind == "logistic":
        return float(np.mean((predictions > 0) != (target.y_test > 0.5)))
    return float(np.mean((predictions - target.y_test) ** 2))


def similarity(out_dir, *, seeds=5, kind="linear", epochs=60, width=10,
               d=100, source_samples=2000, target_samples=50,
               test_samples=2000, log=print):
    """The similarity experiment (see the module); returns its summary."""
    from experiments.data import transfer_tasks
    from tag_keras import transfer

    path = os.path.join(out_dir, f"similarity_{kind}.csv")
    runs = tables.resume(path, ["condition", "seed", "method"])
    done = set(zip(runs["condition"], runs["seed"].astype(int),
                   runs["method"]))
    for seed in range(seeds):
        for name, options in CONDITIONS:
            source, target = transfer_tasks.task_pair(
                d=d, kind=kind, source_samples=source_samples,
                target_samples=target_samples, test_samples=test_samples,
                seed=seed, **options)
            score = transfer.covariance_similarity(source.x_train,
                                                   target.x_train)
            for method in PAIR_METHODS:
                if (name, seed, method) in done:
                    continue
                loss = train_pair(source, target, method, kind=kind,
                                  width=width, epochs=epochs, seed=seed)
                log(f"{kind} {name} seed {seed} {method}: {loss:.4f}")
                runs = tables.append(path, runs, {
                    "condition": name, "seed": seed, "method": method,
                    "similarity": score, "target_loss": loss})
    return similarity_summary(runs)


def similarity_summary(runs):
    """Per condition: similarity, each method's loss, the benefits."""
    rows = []
    for name, _ in CONDITIONS:
        group = runs[runs["condition"] == name]
        if group.empty:
            continue
        wide = group.pivot_table(index="seed", columns="method",
                                 values="target_loss")
        row = {"condition": name,
               "similarity": float(group["similarity"].mean()),
               "seeds": len(wide)}
        for method in PAIR_METHODS:
            if method in wide:
                row[method], row[f"{method} se"] = tables.mean_se(wide[method])
        if {"STL", "MTL"} <= set(wide):
            row["benefit of MTL"], row["benefit of MTL se"] = tables.mean_se(
                wide["STL"] - wide["MTL"])
        if {"MTL", "MTL+align"} <= set(wide):
            row["benefit of alignment"], row["benefit of alignment se"] = (
                tables.mean_se(wide["MTL"] - wide["MTL+align"]))
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------- label noise

NOISE_METHODS = ("MTL", "UW", "SVD")


def flip_labels(data, task, fraction, seed):
    """`data` with `fraction` of `task`'s train and validation labels
    flipped (binary tasks; the same examples for a given seed)."""
    import tensorflow as tf

    if data.num_classes[task] != 2:
        raise ValueError(f"Label flipping needs a binary task. Received: "
                         f"task={task!r} with {data.num_classes[task]} "
                         "classes.")

    def noisy(split, salt):
        dataset = data.split(split)

        def flip(index, example):
            x, labels = example
            draw = tf.random.stateless_uniform(
                [], seed=tf.stack([tf.cast(seed, tf.int64) * 7919 + salt,
                                   index]))
            labels = dict(labels)
            labels[task] = tf.where(draw < fraction, 1 - labels[task],
                                    labels[task])
            return x, labels

        return dataset.enumerate().map(flip)

    return dataclasses.replace(data, train=noisy("train", 1),
                               validation=noisy("validation", 2))


def label_noise(data, config, out_dir, *, noisy_task, fractions=(0.2, 0.4),
                seeds=5, rank=3, log=print):
    """The label-noise experiment (see the module); returns its summary."""
    import tag_keras
    from tag_keras import mtl

    path = os.path.join(out_dir, "label_noise.csv")
    runs = tables.resume(path, ["fraction", "seed", "method"])
    done = set(zip(runs["fraction"].astype(float), runs["seed"].astype(int),
                   runs["method"]))
    clean = [t for t in data.tasks if t != noisy_task]
    for seed in range(seeds):
        for fraction in fractions:
            noisy = flip_labels(data, noisy_task, fraction, seed)
            for method in NOISE_METHODS:
                if (float(fraction), seed, method) in done:
                    continue
                kwargs = {}
                if method != "MTL":
                    training_method = (
                        mtl.UncertaintyWeights() if method == "UW" else
                        mtl.SVDTaskWeights(
                            rank=rank, data=noisy.batches("train", 256)))
                    kwargs = {"model_cls": tag_keras.TaskAffinityModel,
                              "affinity_every_n_steps": 0,
                              "training_method": training_method}
                result, model = training.train_network(
                    noisy, dataclasses.replace(config, seed=seed), **kwargs)
                row = {"fraction": fraction, "seed": seed, "method": method,
                       "clean_error": float(np.mean(
                           [result.test_error[t] for t in clean])),
                       "noisy_task_error": result.test_error[noisy_task]}
                if method == "SVD":
                    weights = model.training_method.task_weights()
                    row["noisy_task_weight"] = weights[noisy_task]
                log(f"noise {fraction} seed {seed} {method}: clean error "
                    f"{row['clean_error']:.4f}")
                runs = tables.append(path, runs, row)
    return noise_summary(runs)


def noise_summary(runs):
    """Per noise level and method: clean-task error, paired differences."""
    rows = []
    for fraction, group in runs.groupby("fraction"):
        wide = group.pivot_table(index="seed", columns="method",
                                 values="clean_error")
        for method in NOISE_METHODS:
            if method not in wide:
                continue
            row = {"fraction": fraction, "method": method,
                   "seeds": int(wide[method].notna().sum())}
            row["clean error"], row["clean error se"] = tables.mean_se(
                wide[method])
            if method != "MTL" and "MTL" in wide:
                row["minus MTL"], row["minus MTL se"] = tables.mean_se(
                    wide[method] - wide["MTL"])
            if method == "SVD" and "UW" in wide:
                row["minus UW"], row["minus UW se"] = tables.mean_se(
                    wide["SVD"] - wide["UW"])
            if method == "SVD":
                weights = group.loc[group["method"] == "SVD",
                                    "noisy_task_weight"]
                row["noisy task weight"] = float(weights.mean())
            rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------- capacity


def capacity(data, config, out_dir, *, widths=(2, 4, 8, 16, 32), seeds=2,
             log=print):
    """The capacity sweep (see the module); returns its summary."""
    path = os.path.join(out_dir, "capacity.csv")
    runs = tables.resume(path, ["width", "seed", "network"])
    done = set(zip(runs["width"].astype(int), runs["seed"].astype(int),
                   runs["network"]))
    networks = [("all", tuple(data.tasks))] + [(t, (t,)) for t in data.tasks]
    for seed in range(seeds):
        for width in widths:
            for name, tasks in networks:
                if (width, seed, name) in done:
                    continue
                result, _ = training.train_network(
                    data, dataclasses.replace(config, seed=seed, width=width),
                    tasks=tasks)
                total = float(sum(result.test_error.values()))
                log(f"width {width} seed {seed} {name}: total error "
                    f"{total:.4f}")
                runs = tables.append(path, runs, {"width": width, "seed": seed,
                                            "network": name,
                                            "total_error": total})
    return capacity_summary(runs)


def capacity_summary(runs):
    """Per width: the all-task network's total error and STL's (summed)."""
    rows = []
    for width, group in runs.groupby("width"):
        per_seed = group.pivot_table(index="seed", columns="network",
                                     values="total_error")
        single = per_seed.drop(columns="all").sum(axis=1)
        row = {"width": int(width), "seeds": len(per_seed)}
        row["all-task"], row["all-task se"] = tables.mean_se(per_seed["all"])
        row["single-task sum"], row["single-task sum se"] = (
            tables.mean_se(single))
        row["all minus single"], row["all minus single se"] = tables.mean_se(
            per_seed["all"] - single)
        rows.append(row)
    return pd.DataFrame(rows)
