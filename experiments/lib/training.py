"""Training and evaluation shared by the experiment binaries.

The protocol of the TAG paper's CelebA experiments, for any task group:
one network per group (the encoder of the all-task model, one head per
task), SGD with momentum, the learning rate halved every
`lr_halving_epochs` epochs, early stopping on the validation loss after
`patience` epochs without improvement, the best epoch's weights restored,
then the error (1 - accuracy) of every task on the test split.

`TrainConfig` holds those numbers; `default_config` gives per-dataset
defaults (`DEFAULT_CONFIGS`): the paper's for CelebA, smaller and faster
ones for the bundled and generated data so a whole pipeline runs in
minutes on two CPU cores. `GroupTrainer` trains each distinct group once
and remembers it, so methods and budgets that choose the same group share
one network. Library code: the binaries read flags and pass values in.

Every network can be trained under a `tf.distribute` strategy
(`experiments.distribution`): it is built and compiled in the strategy's
scope and the batch size is the global batch. Result tables are in
`experiments.results`, the binaries' shared flags in
`experiments.common_flags`.
"""

import contextlib
import dataclasses
import itertools
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


def per_task(logs, tasks, name):
    """`{task: logs[f"{task}_{name}"]}`; a one-task model logs `name` only."""
    if len(tasks) == 1 and name in logs and f"{tasks[0]}_{name}" not in logs:
        return {tasks[0]: float(logs[name])}
    return {t: float(logs[f"{t}_{name}"]) for t in tasks}


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
    validation = model.evaluate(
        group.batches("validation", config.eval_batch_size),
        return_dict=True, verbose=0)
    test = model.evaluate(group.batches("test", config.eval_batch_size),
                          return_dict=True, verbose=0)
    result = TrainResult(
        tasks=tasks,
        test_error={t: 1.0 - a
                    for t, a in per_task(test, tasks, "accuracy").items()},
        validation_loss=per_task(validation, tasks, "loss"),
        epochs=len(val_losses),
        best_epoch=int(np.nanargmin(val_losses)) + 1,
        seconds=seconds,
        affinity=getattr(model, "fit_affinity", None),
    )
    return result, model


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


def network_builder(data, config, *, distribution=None):
    """`build(tasks)`: a compiled network of the protocol for a group."""
    import keras

    from experiments.lib import models

    model_cls = keras.Model
    if distribution is not None:
        model_cls = distribution_lib.distributed_model_class(model_cls)

    def build(tasks):
        group = data.select_tasks(tuple(tasks))
        model = models.build_model(group, width=config.width,
                                   model_cls=model_cls)
        model.compile(optimizer=keras.optimizers.SGD(
            config.learning_rate, momentum=config.momentum),
            **models.compile_kwargs(group))
        return model

    return build


def seeded_trainer(data, config, seeds, *, directory=None,
                   distribution=None, log=print):
    """A `tag_keras.train.GroupTrainer` training with this protocol under
    every seed of `seeds` (`config.seed` is not used)."""
    from tag_keras import train

    return train.GroupTrainer(
        network_builder(data, config, distribution=distribution),
        group_data(data, config), seeds=seeds,
        fit_kwargs={"epochs": config.epochs,
                    "callbacks": fit_callbacks(config)},
        batch_size=config.batch_size, directory=directory,
        distribution=distribution, log=log,
        eval_batch_size=config.eval_batch_size, tasks=data.tasks)


class _Served:
    """What both trainers give from their `result(tasks)`."""

    def served_errors(self, groups, serve):
        """Task -> test error of the group serving it (`serve[task]`)."""
        return {task: self.result(groups[index]).test_error[task]
                for task, index in serve.items()}

    def seconds(self, groups):
        """Total training time of these groups' networks."""
        return sum(self.result(g).seconds for g in groups)


class SeedTrainer(_Served):
    """One seed of a `tag_keras.train.GroupTrainer`, with `GroupTrainer`'s
    interface (`result`, `train_all`, `served_errors`, `seconds`), so that
    HOA and the oracle train through the same networks as the rest.

    Args:
        engine: The `tag_keras.train.GroupTrainer`.
        seed: The seed whose networks this view trains and reads.
        data: The `MultiTaskData`.
        distribution: The strategy the engine trains under (None: none).
    """

    def __init__(self, engine, seed, data, *, distribution=None):
        self.engine, self.seed, self.data = engine, seed, data
        self.distribution = distribution

    def __contains__(self, tasks):
        return self.engine.has(tasks, self.seed)

    def __len__(self):
        return sum(n.seed == self.seed for n in self.engine.stored())

    def add(self, result):
        """Nothing to do: the engine holds the measuring run's network."""

    def result(self, tasks):
        """The `TrainResult` of `tasks` at this seed (trained if needed)."""
        network = self.engine.network(tasks, self.seed)
        return TrainResult(
            tasks=network.tasks,
            test_error={t: network.mean("test", t, "error")
                        for t in network.tasks},
            validation_loss={t: network.mean("validation", t)
                             for t in network.tasks},
            epochs=network.epochs, best_epoch=0, seconds=network.seconds)

    def train_all(self, groups):
        """Trains every group missing at this seed; their results."""
        self.engine.train(groups, seeds=[self.seed])
        return [self.result(g) for g in groups]


def format_group(tasks):
    """`"(a, b)"`."""
    return f"({', '.join(tasks)})"


class GroupTrainer(_Served):
    """Trains each distinct task group once and remembers the result.

    Groups are keyed by their set of tasks: `(a, b)` and `(b, a)` are one
    network. Results of networks trained elsewhere (e.g. the all-task
    measurement run) can be added with `add`.

    Args:
        data: A `MultiTaskData`.
        config: A `TrainConfig`.
        distribution: A `tf.distribute.Strategy` every network is trained
            under (see
            `distribution.make_distribution`); None for none.
        log: Called with one line per network (default `print`).
        training_method: None, or a function returning a new
            `tag_keras.mtl` method for each network (e.g. `mtl.PCGrad`);
            every group must then have two or more tasks.
    """

    def __init__(self, data, config, *, distribution=None, log=print,
                 training_method=None):
        self.data = data
        self.config = config
        self.distribution = distribution
        self._log = log
        self._training_method = training_method
        self._results = {}

    def __contains__(self, tasks):
        return frozenset(tasks) in self._results

    def __len__(self):
        return len(self._results)

    def add(self, result):
        """Remembers a `TrainResult` trained outside this trainer."""
        self._results[frozenset(result.tasks)] = result

    def result(self, tasks):
        """The `TrainResult` of `tasks`, training the network if needed."""
        key = frozenset(tasks)
        if key not in self._results:
            import keras

            keras.backend.clear_session()  # Many models in one process.
            ordered = tuple(t for t in self.data.tasks if t in key)
            kwargs = {}
            if self._training_method is not None:
                import tag_keras

                kwargs = {"model_cls": tag_keras.TaskAffinityModel,
                          "affinity_every_n_steps": 0,
                          "training_method": self._training_method()}
            self._results[key], _ = train_network(
                self.data, self.config, tasks=ordered,
                distribution=self.distribution, **kwargs)
        return self._results[key]

    def train_all(self, groups):
        """Trains every group not trained yet, one progress line each."""
        todo = []
        for group in groups:
            if frozenset(group) not in self and frozenset(group) not in {
                    frozenset(g) for g in todo}:
                todo.append(tuple(t for t in self.data.tasks if t in group))
        start = time.perf_counter()
        for i, group in enumerate(todo, start=1):
            elapsed = time.perf_counter() - start
            eta = ("" if i == 1 else
                   f"; {elapsed:.0f} s so far, ETA "
                   f"{elapsed / (i - 1) * (len(todo) - i + 1):.0f} s")
            self._log(f"[{i}/{len(todo)}] training group {format_group(group)}"
                      f" ...{eta}")
            result = self.result(group)
            self._log(f"    {result.epochs} epochs (best {result.best_epoch})"
                      f" in {result.seconds:.1f} s, test error "
                      + ", ".join(f"{t} {100 * e:.1f}%"
                                  for t, e in result.test_error.items()))
        return [self.result(g) for g in groups]


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
