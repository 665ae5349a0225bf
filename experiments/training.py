"""Training, evaluation and result tables shared by the experiment binaries.

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
(`make_distribution`): it is built and compiled in the strategy's scope,
the batch size is the global batch, and under several workers only the
chief's files are kept (`output_dir`).
"""

import contextlib
import dataclasses
import functools
import itertools
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd

from experiments import data as data_lib


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

    def __post_init__(self):
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
}


def default_config(dataset, **overrides):
    """`DEFAULT_CONFIGS[dataset]` with the non-None `overrides` applied."""
    if dataset not in DEFAULT_CONFIGS:
        raise ValueError(f"`dataset` must be one of {list(DEFAULT_CONFIGS)}. "
                         f"Received: dataset={dataset!r}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(DEFAULT_CONFIGS[dataset], **overrides)


class DataError(Exception):
    """The dataset or a setting is unusable; the message is one line."""


def load_data(name, *, tasks=None, data_dir=None, seed=0, download=True):
    """`data.load_dataset`, with failures as a one-line `DataError`."""
    options = {"download": download} if name == "celeba" else {}
    try:
        return data_lib.load_dataset(name, tasks=tasks, data_dir=data_dir,
                                     seed=seed, **options)
    except data_lib.DatasetUnavailableError as error:
        raise DataError(" ".join(str(error).split())) from None
    except ValueError as error:
        raise DataError(" ".join(str(error).split())) from None


# --distribution values: no strategy, one machine's devices, several machines.
DISTRIBUTIONS = ("default", "mirrored", "multi_worker")


def make_distribution(name):
    """The `tf.distribute` strategy called `name`; None for `"default"`.

    * `"default"`: no strategy (TensorFlow's default device placement).
    * `"mirrored"`: `MirroredStrategy` over every local GPU, or over every
      logical CPU device when there is no GPU (one CPU unless the process
      configured more).
    * `"multi_worker"`: `MultiWorkerMirroredStrategy`, with the cluster and
      this worker's place in it read from the `TF_CONFIG` environment
      variable. Create it before any other TensorFlow operation runs.

    Raises:
        ValueError: If `name` is not one of `DISTRIBUTIONS`.
        DataError: For `"multi_worker"`, if `TF_CONFIG` is unset or not a
            JSON object with a `cluster` (one line).
    """
    if name not in DISTRIBUTIONS:
        raise ValueError(f"`name` must be one of {list(DISTRIBUTIONS)}. "
                         f"Received: name={name!r}")
    if name == "default":
        return None
    import tensorflow as tf

    if name == "mirrored":
        devices = (tf.config.list_logical_devices("GPU")
                   or tf.config.list_logical_devices("CPU"))
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    raw = os.environ.get("TF_CONFIG", "")
    try:
        cluster = json.loads(raw).get("cluster") if raw.strip() else None
    except (ValueError, AttributeError):
        cluster = None
    if not cluster:
        shown = repr(" ".join(raw.split())[:200]) if raw else "(unset)"
        raise DataError(
            "multi_worker reads the cluster from the TF_CONFIG environment "
            "variable, a JSON object with `cluster` and `task` (see "
            f"README). Received: TF_CONFIG={shown}")
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(distribution):
    """Whether this process keeps its files (always, without a strategy)."""
    if distribution is None:
        return True
    from tag_keras import _distribute

    return _distribute.is_chief(distribution)


# Scratch directories of non-chief workers, while they are in use.
_SCRATCH_DIRS = []


@contextlib.contextmanager
def output_dir(out_dir, distribution=None):
    """Yields the directory this process writes into.

    `out_dir` on the chief (and without a strategy). Under a multi-worker
    strategy every worker runs the same code in lockstep; the others write
    into a new temporary directory that is removed on exit, as Keras's
    callbacks do, so only the chief's files exist and `out_dir` is not
    even created on the other workers. A directory inside such a scratch
    directory (a nested call, e.g. the pipeline's `cosine/` run) is used
    as it is, so the layout below it is the chief's.
    """
    if is_chief(distribution) or _in_scratch(out_dir):
        yield out_dir
        return
    scratch = tempfile.mkdtemp(prefix="tag_keras_worker_")
    _SCRATCH_DIRS.append(scratch)
    try:
        yield scratch
    finally:
        _SCRATCH_DIRS.remove(scratch)
        shutil.rmtree(scratch, ignore_errors=True)


def _in_scratch(path):
    path = os.path.realpath(path)
    return any(
        os.path.commonpath([path, os.path.realpath(s)]) == os.path.realpath(s)
        for s in _SCRATCH_DIRS)


@functools.cache
def distributed_model_class(model_cls):
    """`model_cls`, made to fit under any strategy as it fits without one.

    Adds `tag_keras._distribute.MultiWorkerFixes` (already a base of
    `TaskAffinityModel`): under a strategy, the model is built from the
    dataset's shapes without consuming a shuffle (every epoch sees the
    batches of the single-device run), and a plain `keras.Model` can fit
    under `MultiWorkerMirroredStrategy` at all.
    """
    from tag_keras import _distribute

    if issubclass(model_cls, _distribute.MultiWorkerFixes):
        return model_cls

    class Distributed(_distribute.MultiWorkerFixes, model_cls):
        pass

    Distributed.__name__ = Distributed.__qualname__ = model_cls.__name__
    return Distributed


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


def _affinity_keeper():
    """A callback reading the model's affinity at the end of `fit`.

    Placed before `EarlyStopping`, it runs before the best-weights restore,
    which also restores the affinity accumulators (they are model weights).
    """
    import keras

    class KeepAffinity(keras.callbacks.Callback):
        affinity = None

        def on_train_end(self, logs=None):
            self.affinity = self.model.affinity()

    return KeepAffinity()


def train_network(data, config, *, tasks=None, model_cls=None, callbacks=(),
                  verbose=0, distribution=None, **model_kwargs):
    """Builds, compiles, trains and evaluates one network.

    Args:
        data: A `MultiTaskData`.
        config: A `TrainConfig` (`batch_size` is the global batch).
        tasks: The group's tasks (`None` for all of `data.tasks`).
        model_cls: `keras.Model` (default) or `tag_keras.TaskAffinityModel`.
        callbacks: More Keras callbacks; they run before early stopping,
            so an `AffinityLogger` sees the whole run's affinity.
        verbose: Keras `fit` verbosity.
        distribution: A `tf.distribute.Strategy` (see `make_distribution`)
            whose scope builds and compiles the model (of
            `distributed_model_class(model_cls)`); None for none.
        **model_kwargs: Passed to the model, e.g. `affinity_method`.

    Returns:
        `(TrainResult, model)`. For a `TaskAffinityModel`, the mean affinity
        over the whole run is `TrainResult.affinity`: after `fit`,
        `model.affinity()` is the best epoch's (early stopping restores the
        accumulators with the weights, they are model weights).
    """
    import keras

    from experiments import models

    tasks = tuple(data.tasks if tasks is None else tasks)
    group = data.select_tasks(tasks) if tasks != tuple(data.tasks) else data
    model_cls = keras.Model if model_cls is None else model_cls
    scope = contextlib.nullcontext()
    if distribution is not None:
        model_cls = distributed_model_class(model_cls)
        scope = distribution.scope()
    keras.utils.set_random_seed(config.seed)
    with scope:
        model = models.build_model(group, width=config.width,
                                   model_cls=model_cls, **model_kwargs)
        model.compile(
            optimizer=keras.optimizers.SGD(config.learning_rate,
                                           momentum=config.momentum),
            **models.compile_kwargs(group))
    keep = []
    if hasattr(model, "affinity"):
        keep = [_affinity_keeper()]
    start = time.perf_counter()
    history = model.fit(
        group.batches("train", config.batch_size, shuffle=True,
                      seed=config.seed),
        validation_data=group.batches("validation", config.eval_batch_size),
        epochs=config.epochs, verbose=verbose, shuffle=False,
        callbacks=[*callbacks, *keep, *fit_callbacks(config)])
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
        affinity=keep[0].affinity if keep else None,
    )
    return result, model


def format_group(tasks):
    """`"(a, b)"`."""
    return f"({', '.join(tasks)})"


class GroupTrainer:
    """Trains each distinct task group once and remembers the result.

    Groups are keys by their set of tasks: `(a, b)` and `(b, a)` are one
    network. Results of networks trained elsewhere (e.g. the all-task
    measurement run) can be added with `add`.

    Args:
        data: A `MultiTaskData`.
        config: A `TrainConfig`.
        distribution: A `tf.distribute.Strategy` every network is trained
            under (see `make_distribution`); None for none.
        log: Called with one line per network (default `print`).
    """

    def __init__(self, data, config, *, distribution=None, log=print):
        self.data = data
        self.config = config
        self.distribution = distribution
        self._log = log
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
            self._results[key], _ = train_network(
                self.data, self.config, tasks=ordered,
                distribution=self.distribution)
        return self._results[key]

    def train_all(self, groups):
        """Trains every group not trained yet, one progress line each."""
        todo = []
        for group in groups:
            if frozenset(group) not in self and frozenset(group) not in {
                    frozenset(g) for g in todo}:
                todo.append(tuple(t for t in self.data.tasks if t in group))
        for i, group in enumerate(todo, start=1):
            self._log(f"[{i}/{len(todo)}] training group {format_group(group)}"
                      " ...")
            result = self.result(group)
            self._log(f"    {result.epochs} epochs (best {result.best_epoch})"
                      f" in {result.seconds:.1f} s, test error "
                      + ", ".join(f"{t} {100 * e:.1f}%"
                                  for t, e in result.test_error.items()))
        return [self.result(g) for g in groups]

    def served_errors(self, groups, serve):
        """Task -> test error of the group serving it (`serve[task]`)."""
        return {task: self.result(groups[index]).test_error[task]
                for task, index in serve.items()}

    def seconds(self, groups):
        """Total training time of these groups' networks."""
        return sum(self.result(g).seconds for g in groups)


def serve_partition(groups):
    """`{task: index of its group}` for disjoint groups."""
    return {task: i for i, group in enumerate(groups) for task in group}


def random_partitions(tasks, num_groups, num_samples, seed):
    """`num_samples` random partitions of `tasks` into `num_groups` groups.

    Each is drawn uniformly among the partitions into exactly `num_groups`
    non-empty groups (a uniform labelling, redrawn until every label is
    used), from `np.random.default_rng(seed)`. Groups keep the task order.
    """
    tasks = tuple(tasks)
    if not 1 <= num_groups <= len(tasks):
        raise ValueError(
            f"`num_groups` must be between 1 and the number of tasks "
            f"({len(tasks)}). Received: num_groups={num_groups}")
    rng = np.random.default_rng(seed)
    partitions = []
    while len(partitions) < num_samples:
        labels = rng.integers(0, num_groups, size=len(tasks))
        if len(set(labels.tolist())) < num_groups:
            continue
        groups = [tuple(t for t, label in zip(tasks, labels, strict=True)
                        if label == g) for g in range(num_groups)]
        partitions.append(tuple(sorted(
            groups, key=lambda g: tasks.index(g[0]))))
    return partitions


# ----------------------------------------------------------------------
# Result tables.


@dataclasses.dataclass(frozen=True)
class MethodResult:
    """One row of a comparison table.

    Attributes:
        method: E.g. "MTL", "STL", "RG", "CS", "TAG", "HOA".
        num_groups: The budget (networks at inference).
        errors: Task -> test error (fraction), served by the chosen groups
            (for RG, the mean over the sampled groupings).
        groups: The groups, as tuples of task names ((), for RG).
        search_seconds: Wall time spent finding the groups (training for
            the affinities or performances, plus selection); None if none.
        samples: How many groupings were averaged (RG).
    """

    method: str
    num_groups: int
    errors: Mapping
    groups: tuple = ()
    search_seconds: float | None = None
    samples: int = 1

    @property
    def total(self):
        """Total test error in percent (sum over tasks, as the paper)."""
        return 100 * sum(self.errors.values())


def mean_errors(list_of_errors):
    """Task-wise mean of several `{task: error}`."""
    tasks = list(list_of_errors[0])
    return {t: float(np.mean([e[t] for e in list_of_errors])) for t in tasks}


def results_frame(results, tasks):
    """One row per method and budget: per-task and total test error (%)."""
    rows = []
    for r in results:
        row = {"method": r.method, "num_groups": r.num_groups,
               "samples": r.samples,
               "groups": " | ".join("+".join(g) for g in r.groups)}
        row.update({t: round(100 * r.errors[t], 4) for t in tasks})
        row["total"] = round(r.total, 4)
        row["search_seconds"] = (None if r.search_seconds is None
                                 else round(r.search_seconds, 2))
        rows.append(row)
    return pd.DataFrame(rows, columns=["method", "num_groups", "samples",
                                       "groups", *tasks, "total",
                                       "search_seconds"])


def markdown_table(frame, tasks):
    """A results frame as a markdown table shaped like the paper's."""
    header = ["Method", "Groups", *tasks, "Total", "Search time"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for row in frame.to_dict("records"):
        method = row["method"]
        if row["samples"] > 1:
            method += f" (mean of {row['samples']})"
        search = row["search_seconds"]
        search = "" if search is None or (
            isinstance(search, float) and math.isnan(search)) else (
            f"{search:.1f} s")
        cells = [method, str(row["num_groups"])]
        cells += [f"{row[t]:.2f}" for t in tasks]
        cells += [f"{row['total']:.2f}", search]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(results, tasks, out_dir, *, title=None):
    """Writes `results.csv` and `results.md` in `out_dir`; returns the frame.

    The CSV has columns method, num_groups, samples, groups, one per task
    (test error in %), total (%) and search_seconds.
    """
    frame = results_frame(results, tasks)
    frame.to_csv(os.path.join(out_dir, "results.csv"), index=False)
    text = markdown_table(frame, tasks)
    if title:
        text = f"{title}\n\n{text}"
    with open(os.path.join(out_dir, "results.md"), "w") as handle:
        handle.write(text)
    return frame


def pairs(tasks):
    """Every pair of tasks, in task order."""
    return list(itertools.combinations(tasks, 2))


# ----------------------------------------------------------------------
# Flags shared by the binaries. Each binary calls `define_common_flags()`
# at import and keeps the returned holders module-private; only its `main`
# reads them (through `config_from_flags`). The flags are defined once per
# process (the pipeline imports the other binaries), and with
# `allow_override` so that importing the binaries next to other modules
# that define some of these names (`experiments.demo`: out_dir, epochs,
# seed; the benchmarks: tasks, batch_size), as one pytest process does,
# does not raise DuplicateFlagError. Only a binary run as `__main__`
# parses them.

_COMMON_FLAGS = []
_SEEDS_FLAG = []


@dataclasses.dataclass(frozen=True)
class CommonFlags:
    """The absl flag holders every experiment binary defines."""

    dataset: object
    tasks: object
    data_dir: object
    download: object
    out_dir: object
    epochs: object
    batch_size: object
    learning_rate: object
    momentum: object
    seed: object
    affinity_every_n_steps: object
    width: object
    patience: object
    lr_halving_epochs: object
    budgets: object
    gradnorm_alpha: object
    distribution: object

    def out_dir_or(self, default):
        """The `--out_dir` value, or `default` when the flag is not set."""
        return self.out_dir.value or default

    def budget_list(self, default=(2, 3, 4)):
        """`--budgets` as a list of ints (`default` when not set)."""
        if not self.budgets.value:
            return None if default is None else list(default)
        try:
            budgets = [int(b) for b in self.budgets.value]
        except ValueError:
            budgets = [0]
        if min(budgets) < 1:
            raise DataError("--budgets must be integers >= 1. Received: "
                            f"{','.join(self.budgets.value)}")
        return budgets


def define_common_flags():
    """Defines the common flags once; returns their holders."""
    if _COMMON_FLAGS:
        return _COMMON_FLAGS[0]
    from absl import flags

    per_dataset = " (default: per dataset, see training.DEFAULT_CONFIGS)"
    override = {"allow_override": True}
    holders = CommonFlags(
        dataset=flags.DEFINE_enum(
            "dataset", "digits", list(data_lib.DATASETS), "Dataset.",
            **override),
        tasks=flags.DEFINE_list(
            "tasks", None, "Tasks (default: the dataset's default tasks).",
            **override),
        data_dir=flags.DEFINE_string(
            "data_dir", None, "Data directory (CelebA: the tfds data_dir).",
            **override),
        download=flags.DEFINE_bool(
            "download", True, "CelebA: let tensorflow-datasets download and "
            "prepare the data when it is absent.", **override),
        out_dir=flags.DEFINE_string(
            "out_dir", None, "Directory for everything written (default: "
            "runs/<binary>).", **override),
        epochs=flags.DEFINE_integer(
            "epochs", None, "Largest number of epochs" + per_dataset + ".",
            lower_bound=1, **override),
        batch_size=flags.DEFINE_integer(
            "batch_size", None, "Batch size" + per_dataset + ".",
            lower_bound=1, **override),
        learning_rate=flags.DEFINE_float(
            "learning_rate", None, "Initial SGD learning rate" + per_dataset
            + ".", lower_bound=0.0, **override),
        momentum=flags.DEFINE_float(
            "momentum", 0.9, "SGD momentum (0.9 as the paper).",
            lower_bound=0.0, upper_bound=0.999, **override),
        seed=flags.DEFINE_integer("seed", 0, "Random seed.", **override),
        affinity_every_n_steps=flags.DEFINE_integer(
            "affinity_every_n_steps", 10, "Measure affinity every this many "
            "steps (10 as the paper).", lower_bound=1, **override),
        width=flags.DEFINE_integer(
            "width", None, "Encoder width, the same for every network"
            + per_dataset + ".", lower_bound=1, **override),
        patience=flags.DEFINE_integer(
            "patience", None, "Early stopping patience in epochs on the "
            "validation loss; the best epoch is restored" + per_dataset
            + ".", lower_bound=1, **override),
        lr_halving_epochs=flags.DEFINE_integer(
            "lr_halving_epochs", None, "Halve the learning rate every this "
            "many epochs" + per_dataset + ".", lower_bound=1, **override),
        budgets=flags.DEFINE_list(
            "budgets", None, "Budgets: numbers of networks (default: "
            "2,3,4; train_groups: every budget in the JSON).", **override),
        gradnorm_alpha=flags.DEFINE_float(
            "gradnorm_alpha", 1.5, "GradNorm's asymmetry alpha (training "
            "with gradnorm).", lower_bound=0.0, **override),
        distribution=flags.DEFINE_enum(
            "distribution", "default", list(DISTRIBUTIONS),
            "tf.distribute strategy of every network: default (none), "
            "mirrored (MirroredStrategy over this machine's GPUs, or its "
            "logical CPUs without GPU), multi_worker "
            "(MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG "
            "and only the chief writes files). --batch_size is the global "
            "batch.", **override),
    )
    _COMMON_FLAGS.append(holders)
    return holders


def define_seeds_flag():
    """`--seeds`, shared by the binaries that repeat runs over seeds.

    One definition (and one holder) however many such binaries a process
    imports, as absl allows a flag name once.
    """
    if _SEEDS_FLAG:
        return _SEEDS_FLAG[0]
    from absl import flags

    holder = flags.DEFINE_integer(
        "seeds", 3, "Runs per method, with seeds 0..seeds-1 (initial "
        "weights, shuffling; the data split is fixed). Results already "
        "on disk are reused, so raising it adds seeds.", lower_bound=1)
    _SEEDS_FLAG.append(holder)
    return holder


def config_from_flags(common):
    """`TrainConfig` from the flag values (call from `main` only)."""
    return default_config(
        common.dataset.value,
        epochs=common.epochs.value,
        batch_size=common.batch_size.value,
        learning_rate=common.learning_rate.value,
        momentum=common.momentum.value,
        seed=common.seed.value,
        affinity_every_n_steps=common.affinity_every_n_steps.value,
        width=common.width.value,
        patience=common.patience.value,
        lr_halving_epochs=common.lr_halving_epochs.value,
    )


def distribution_from_flags(common):
    """The `--distribution` strategy; raises `DataError` (one line).

    Call it from `main` before anything else touches TensorFlow (a
    multi-worker strategy must be created first).
    """
    name = common.distribution.value
    if name != "default":
        import tensorflow as tf

        # One INFO line per collective otherwise; the binaries print the
        # strategy and its replicas themselves.
        tf.get_logger().setLevel("WARNING")
    try:
        return make_distribution(name)
    except (DataError, ValueError) as error:
        raise DataError(f"--distribution={name}: {error}") from None


def data_from_flags(common):
    """Loads the dataset the flags name; raises `DataError` (one line)."""
    return load_data(common.dataset.value, tasks=common.tasks.value,
                     data_dir=common.data_dir.value, seed=common.seed.value,
                     download=common.download.value)


def distribution_info(distribution):
    """`{"strategy": name, "replicas": n, "chief": bool}`; None for none."""
    if distribution is None:
        return None
    import tensorflow as tf

    name = type(distribution).__name__
    if isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy):
        name = "MultiWorkerMirroredStrategy"  # Its class is an alias.
    return {"strategy": name,
            "replicas": distribution.num_replicas_in_sync,
            "chief": is_chief(distribution)}


def describe_distribution(distribution):
    """`""`, or `"; MirroredStrategy, 2 replicas"` and the like."""
    info = distribution_info(distribution)
    if info is None:
        return ""
    replicas = info["replicas"]
    return (f"; {info['strategy']}, {replicas} "
            f"replica{'s' if replicas != 1 else ''}"
            + ("" if info["chief"] else " (not the chief: writes no file)"))


def describe_config(config):
    """One line: the training settings."""
    return (f"epochs<={config.epochs}, batch {config.batch_size}, SGD lr "
            f"{config.learning_rate:g} momentum {config.momentum:g} halved "
            f"every {config.lr_halving_epochs} epochs, patience "
            f"{config.patience}, width {config.width}, seed {config.seed}")
