"""Training and evaluation shared by the experiment binaries.

The protocol of the TAG paper's CelebA experiments, for any task group:
one network per group (the encoder of the all-task model, one head per
task), SGD with momentum, the learning rate halved every
`lr_halving_epochs` epochs, early stopping after `patience` epochs
without a lower monitored loss, the best epoch's weights restored, then
every task's error on the test split, example by example as the library
computes it (`tag_keras.train.outcomes`: 1 where the most probable label
is wrong).

`TrainConfig` holds those numbers; `default_config` gives per-dataset
defaults (`DEFAULT_CONFIGS`): the paper's for CelebA, smaller and faster
ones for the bundled and generated data so a whole pipeline runs in
minutes on two CPU cores.

Groups of tasks train through one engine, the library's
`tag_keras.train.GroupTrainer` (`seeded_trainer`): each distinct group
once per seed, early-stopped on a slice carved from the training data,
so methods and budgets that choose the same group share one network.
`train_network` trains one network whose model the caller needs (the
affinity-measuring runs, the diagnostics); it early-stops on the
validation split, as the paper's measuring run did. Library code: the
binaries read flags and pass values in.

Every network can be trained under a `tf.distribute` strategy
(`experiments.distribution`): it is built and compiled in the strategy's
scope and the batch size is the global batch. Result tables are in
`experiments.results`, the binaries' shared flags in
`experiments.common_flags`.
"""

import contextlib
import dataclasses
import itertools
import math
import os
import time
from collections.abc import Mapping

import numpy as np

from experiments import data as data_lib
from experiments.lib import distribution as distribution_lib
from tag_keras import InputError
from tag_keras.train import random_groupings
# The partition helpers live in the library (no TensorFlow needed).
from tag_keras.train.random_groupings import all_partitions  # noqa: F401
from tag_keras.train.random_groupings import partition_count  # noqa: F401


#: `TrainConfig.verbose` values.
VERBOSITY = ("silent", "lines", "bar")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How one network is trained.

    Args:
        epochs: Largest number of epochs.
        batch_size: Training batch size.
        learning_rate: Initial SGD learning rate.
        momentum: SGD momentum (0.9 in the paper).
        patience: Early stopping: epochs without a lower validation loss
            before training stops; the best epoch's weights are restored.
        lr_halving_epochs: Halve the learning rate every this many epochs.
        width: Encoder width (`None` for the encoder's default).
        seed: Seed of the initial weights and of the shuffling.
        affinity_every_n_steps: Measure affinity every this many steps in
            the all-task measurement runs (10 in the paper).
        eval_batch_size: Batch size of validation and test evaluation.
        verbose: How `fit` reports progress (not part of the protocol):
            "silent", "lines" (one line per epoch with the losses, seconds
            per epoch and the network's ETA) or "bar" (Keras's bar).
    """

    epochs: int
    batch_size: int
    learning_rate: float
    momentum: float = 0.9
    patience: int = 10
    lr_halving_epochs: int = 15
    width: int | None = None
    seed: int = 0
    affinity_every_n_steps: int = 10
    eval_batch_size: int = 512
    verbose: str = "silent"

    def __post_init__(self):
        if self.verbose not in VERBOSITY:
            raise ValueError(f"`verbose` must be one of {list(VERBOSITY)}. "
                             f"Received: verbose={self.verbose!r}")
        for name in ("epochs", "batch_size", "patience", "lr_halving_epochs",
                     "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1. Received: "
                                 f"{name}={getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError("`learning_rate` must be positive. Received: "
                             f"learning_rate={self.learning_rate}")
        if not 0 <= self.momentum < 1:
            raise ValueError("`momentum` must be in [0, 1). Received: "
                             f"momentum={self.momentum}")
        if self.affinity_every_n_steps < 0:
            raise ValueError(
                "`affinity_every_n_steps` must be >= 0. Received: "
                f"affinity_every_n_steps={self.affinity_every_n_steps}")

    def learning_rate_at(self, epoch):
        """The learning rate of 0-based `epoch`: halved every few epochs."""
        return self.learning_rate * 0.5 ** (epoch // self.lr_halving_epochs)


# CelebA: the paper's setup. The others: a few seconds per network on CPU.
DEFAULT_CONFIGS = {
    "celeba": TrainConfig(epochs=100, batch_size=256, learning_rate=5e-4,
                          patience=10, lr_halving_epochs=15, width=64),
    "digits": TrainConfig(epochs=12, batch_size=32, learning_rate=0.02,
                          patience=4, lr_halving_epochs=6, width=16),
    "multi_digits": TrainConfig(epochs=12, batch_size=32, learning_rate=0.02,
                                patience=4, lr_halving_epochs=6, width=16),
    "planted": TrainConfig(epochs=10, batch_size=64, learning_rate=0.05,
                           patience=3, lr_halving_epochs=5, width=32),
    # The real 28x28 digits: a LeNet-like CNN, a few seconds per epoch.
    "mnist": TrainConfig(epochs=10, batch_size=64, learning_rate=0.02,
                         patience=3, lr_halving_epochs=5, width=16),
    # The IT-MTL papers' MultiMNIST protocol scaled down: SGD momentum
    # 0.9, batch 256, the rate halved every 30 epochs.
    "multi_mnist": TrainConfig(epochs=30, batch_size=256,
                               learning_rate=0.05, patience=10,
                               lr_halving_epochs=30, width=16),
}


def default_config(dataset, **overrides):
    """`DEFAULT_CONFIGS[dataset]` with the non-None `overrides` applied."""
    if dataset not in DEFAULT_CONFIGS:
        raise ValueError(f"`dataset` must be one of {list(DEFAULT_CONFIGS)}. "
                         f"Received: dataset={dataset!r}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(DEFAULT_CONFIGS[dataset], **overrides)



def check_out_dir(path):
    """Raises `InputError` unless `path` is, or can become, a directory.

    Called before any work, so that a typo does not cost a training run.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"--out_dir must be a directory; {path} is a file. "
                         f"Received: out_dir={path}")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise InputError(f"--out_dir cannot be created: {parent} is not a "
                         f"writable directory. Received: out_dir={path}")


def check_multi_task(tasks, what="Measuring affinity"):
    """Raises `InputError` unless there are two or more `tasks`."""
    if len(tasks) < 2:
        raise InputError(f"{what} needs at least two tasks. Received: "
                         f"tasks={list(tasks)} (give more with --tasks)")


def load_data(name, *, tasks=None, data_dir=None, seed=0, download=True):
    """`data.load_dataset`, with failures as a one-line `InputError`."""
    options = {"download": download} if name == "celeba" else {}
    try:
        return data_lib.load_dataset(name, tasks=tasks, data_dir=data_dir,
                                     seed=seed, **options)
    except data_lib.DatasetUnavailableError as error:
        raise InputError(" ".join(str(error).split())) from None
    except ValueError as error:
        raise InputError(" ".join(str(error).split())) from None


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What one trained network gave.

    Attributes:
        tasks: The tasks the network was trained on.
        test_error: Task -> test error (1 - accuracy, a fraction).
        validation_loss: Task -> validation loss with the restored weights.
        epochs: Epochs trained (early stopping may stop before the limit).
        best_epoch: 1-based epoch whose weights were kept.
        seconds: Wall time of the training (`fit`), evaluation excluded.
        affinity: For a `TaskAffinityModel`, the mean affinity over the
            whole `fit` (DataFrame, row = source); None otherwise.
    """

    tasks: tuple
    test_error: Mapping
    validation_loss: Mapping
    epochs: int
    best_epoch: int
    seconds: float
    affinity: object = None


def fit_callbacks(config):
    """Early stopping with best-weights restore, and LR halving."""
    import keras

    return [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.patience,
            restore_best_weights=True),
        keras.callbacks.LearningRateScheduler(
            lambda epoch, lr: config.learning_rate_at(epoch)),
    ]


def train_network(data, config, *, tasks=None, model_cls=None, callbacks=(),
                  distribution=None, **model_kwargs):
    """Builds, compiles, trains and evaluates one network.

    Args:
        data: A `MultiTaskData`.
        config: A `TrainConfig` (`batch_size` is the global batch).
        tasks: The group's tasks (`None` for all of `data.tasks`).
        model_cls: `keras.Model` (default) or `tag_keras.TaskAffinityModel`.
        callbacks: More Keras callbacks.
        distribution: A `tf.distribute.Strategy` (see
            `distribution.make_distribution`) whose scope builds and
            compiles the model (of `distributed_model_class(model_cls)`);
            None for none.
        **model_kwargs: Passed to the model, e.g. `affinity_method`.

    Returns:
        `(TrainResult, model)`. For a `TaskAffinityModel`, the mean affinity
        over the whole run is `TrainResult.affinity` (the model's
        `fit_affinity`): after `fit`, `model.affinity()` is the best
        epoch's (early stopping restores the accumulators with the
        weights, they are model weights).
    """
    import keras

    from experiments.lib import models

    tasks = tuple(data.tasks if tasks is None else tasks)
    group = data.select_tasks(tasks) if tasks != tuple(data.tasks) else data
    model_cls = keras.Model if model_cls is None else model_cls
    scope = contextlib.nullcontext()
    if distribution is not None:
        model_cls = distribution_lib.distributed_model_class(model_cls)
        scope = distribution.scope()
    keras.utils.set_random_seed(config.seed)
    with scope:
        model = models.build_model(group, width=config.width,
                                   model_cls=model_cls, **model_kwargs)
        model.compile(
            optimizer=keras.optimizers.SGD(config.learning_rate,
                                           momentum=config.momentum),
            **models.compile_kwargs(group))
    progress = []
    if config.verbose == "lines":
        from experiments.lib import timing

        progress = [timing.EpochProgress(config.epochs,
                                         label=format_group(tasks))]
    start = time.perf_counter()
    history = model.fit(
        group.batches("train", config.batch_size, shuffle=True,
                      seed=config.seed),
        validation_data=group.batches("validation", config.eval_batch_size),
        epochs=config.epochs, verbose=int(config.verbose == "bar"),
        shuffle=False,
        callbacks=[*callbacks, *progress, *fit_callbacks(config)])
    seconds = time.perf_counter() - start
    val_losses = history.history["val_loss"]
    # The library's per-example evaluation, as every group network's.
    network = evaluated_network(model, group, tasks, config.seed,
                                config.eval_batch_size)
    result = TrainResult(
        tasks=tasks,
        test_error={t: network.mean("test", t, "error") for t in tasks},
        validation_loss={t: network.mean("validation", t) for t in tasks},
        epochs=len(val_losses),
        best_epoch=int(np.nanargmin(val_losses)) + 1,
        seconds=seconds,
        affinity=getattr(model, "fit_affinity", None),
    )
    return result, model


def evaluated_network(model, data, tasks, seed, batch_size):
    """`model` evaluated example by example on `data`'s validation and
    test splits, as a `tag_keras.train.Network` (whose `mean(split, task,
    "error")` is the test error of every table here)."""
    from tag_keras.train import networks as networks_lib
    from tag_keras.train import outcomes

    tasks = tuple(tasks)
    evaluated = {split: outcomes.evaluate_network(
                     model, data.batches(split, batch_size), tasks, tasks,
                     batch_size)
                 for split in networks_lib.EVALUATED}
    return networks_lib.Network(tasks, int(seed), math.nan, 0, evaluated, {})


def split_arrays(data, split):
    """A split of a `MultiTaskData` as `(x, {task: labels})` NumPy arrays."""
    xs, ys = [], {t: [] for t in data.tasks}
    for x, labels in data.batches(split, 1024).as_numpy_iterator():
        xs.append(x)
        for task in data.tasks:
            ys[task].append(labels[task])
    return np.concatenate(xs), {t: np.concatenate(v) for t, v in ys.items()}


#: Datasets too large to hold in memory: group training reads them as
#: batched datasets; every other one (all bundled or generated) as arrays.
STREAMED = ("celeba",)


def group_data(data, config):
    """The data dict `tag_keras.train.GroupTrainer` takes, for `data`.

    Bundled and generated datasets become arrays, so each training seed
    shuffles them its own way; CelebA stays a batched dataset (shuffled
    with `config.seed`).
    """
    if data.name not in STREAMED:
        return {s: split_arrays(data, s)
                for s in ("train", "validation", "test")}
    return {"train": data.batches("train", config.batch_size, shuffle=True,
                                  seed=config.seed),
            "validation": data.batches("validation", config.eval_batch_size),
            "test": data.batches("test", config.eval_batch_size)}


def network_builder(data, config, *, distribution=None, training_method=None):
    """`build(tasks)`: a compiled network of the protocol for a group.

    With `training_method` (a function returning a new `tag_keras.mtl`
    method, e.g. `mtl.PCGrad`), each network is a `TaskAffinityModel`
    trained with that method and measuring nothing.
    """
    import keras

    from experiments.lib import models

    model_cls = keras.Model
    if training_method is not None:
        import tag_keras

        model_cls = tag_keras.TaskAffinityModel
    if distribution is not None:
        model_cls = distribution_lib.distributed_model_class(model_cls)

    def build(tasks):
        group = data.select_tasks(tuple(tasks))
        options = {} if training_method is None else {
            "affinity_every_n_steps": 0, "training_method": training_method()}
        model = models.build_model(group, width=config.width,
                                   model_cls=model_cls, **options)
        model.compile(optimizer=keras.optimizers.SGD(
            config.learning_rate, momentum=config.momentum),
            **models.compile_kwargs(group))
        return model

    return build


def seeded_trainer(data, config, seeds=None, *, directory=None,
                   distribution=None, log=print, training_method=None):
    """The `tag_keras.train.GroupTrainer` that trains every network of the
    experiments: this protocol's networks (`network_builder`) under every
    seed of `seeds` (default: `[config.seed]`), early-stopped on a slice
    carved from the training data (the validation split decides)."""
    from tag_keras import train

    return train.GroupTrainer(
        network_builder(data, config, distribution=distribution,
                        training_method=training_method),
        group_data(data, config),
        seeds=[config.seed] if seeds is None else seeds,
        fit_kwargs={"epochs": config.epochs,
                    "callbacks": fit_callbacks(config)},
        batch_size=config.batch_size, directory=directory,
        distribution=distribution, log=log,
        eval_batch_size=config.eval_batch_size, tasks=data.tasks)


def served_errors(engine, groups, serve, seed=None):
    """Task -> test error of the network of the group serving it
    (`groups[serve[task]]`) at `seed` (default: the engine's first), each
    group trained if missing."""
    seed = engine.seeds[0] if seed is None else seed
    engine.train(groups, seeds=[seed])
    return {task: engine.network(groups[index], seed).mean(
                "test", task, "error")
            for task, index in serve.items()}


def training_seconds(engine, groups, seed=None):
    """Total training time of these groups' networks at `seed` (default:
    the engine's first)."""
    seed = engine.seeds[0] if seed is None else seed
    return sum(engine.network(g, seed).seconds for g in groups)


def format_group(tasks):
    """`"(a, b)"`."""
    return f"({', '.join(tasks)})"


def serve_partition(groups):
    """`{task: index of its group}` for disjoint groups."""
    return {task: i for i, group in enumerate(groups) for task in group}


def random_partitions(tasks, num_groups, num_samples, seed):
    """The partitions of `tag_keras.train.random_partitions` (every one
    when there are at most `num_samples`, else a uniform sample)."""
    return random_groupings.random_partitions(tasks, num_groups,
                                              num_samples, seed)[0]


def pairs(tasks):
    """Every pair of tasks, in task order."""
    return list(itertools.combinations(tasks, 2))


def describe_config(config):
    """One line: the training settings."""
    return (f"epochs<={config.epochs}, batch {config.batch_size}, SGD lr "
            f"{config.learning_rate:g} momentum {config.momentum:g} halved "
            f"every {config.lr_halving_epochs} epochs, patience "
            f"{config.patience}, width {config.width}, seed {config.seed}")
