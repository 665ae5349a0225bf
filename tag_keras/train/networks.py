"""Training task groups on any model: each group once per seed, cached.

`GroupTrainer` takes the user's `build(tasks) -> compiled keras.Model`
(one output per task, keyed by name), the data dict of
`tag_keras.train.data`, `fit` keyword arguments and training seeds. Each
distinct group (a set of tasks: `(a, b)` and `(b, a)` are one network)
is trained once per seed, evaluated on validation (and test) example by
example, and stored in a directory as one `.npz` file per network, so a
rerun after an interruption trains only what is missing. The all-task
network of a measuring run can be added as it is (`add_model`).

Training order is group by group, seed by seed; one line per network says
where the run is and what is left (with an ETA).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import time
import zipfile
import zlib
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tag_keras import _files
from tag_keras.train import data as data_lib
from tag_keras.train import fingerprint as fingerprint_lib
from tag_keras.train import outcomes as outcomes_lib

if TYPE_CHECKING:  # for annotations only
    import keras
    import tensorflow as tf

    from tag_keras.train.executors import RayExecutor

#: Splits every network is evaluated on, when the data holds them.
EVALUATED = ("validation", "test")


@dataclasses.dataclass(frozen=True)
class Network:
    """One trained network: a group of tasks at one seed.

    Attributes:
        tasks: The group, in the data's task order.
        seed: The training seed.
        seconds: Wall time of `fit` (NaN for a model added as it is).
        epochs: Epochs trained (0 when unknown).
        outcomes: Split -> task -> `(losses, errors)`, one value per
            example of the split (NaN where the example is not labelled).
        fingerprints: What it was made from
            (`tag_keras.train.fingerprint`): part -> digest.
    """

    tasks: tuple
    seed: int
    seconds: float
    epochs: int
    outcomes: Mapping
    fingerprints: Mapping = dataclasses.field(default_factory=dict)

    def mean(self, split: str, task: str, metric: str = "loss") -> float:
        """The mean `metric` ("loss" or "error") of `task` on `split`."""
        values = self.outcomes[split][task][0 if metric == "loss" else 1]
        values = values[~np.isnan(values)]
        return float(values.mean()) if len(values) else math.nan


def group_key(tasks, seed):
    """The file name (without suffix) of a group's network at `seed`."""
    text = json.dumps([sorted(tasks), int(seed)])
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def save_network(path, network):
    """Writes `network` to `path` (`.npz`, atomically, no pickle)."""
    arrays = {
        "meta": np.array(
            json.dumps(
                {
                    "tasks": list(network.tasks),
                    "seed": network.seed,
                    "seconds": network.seconds,
                    "epochs": network.epochs,
                    "splits": list(network.outcomes),
                    "fingerprints": dict(network.fingerprints),
                }
            )
        )
    }
    for split, per_task in network.outcomes.items():
        for i, task in enumerate(network.tasks):
            arrays[f"{split}_loss_{i}"] = per_task[task][0]
            arrays[f"{split}_error_{i}"] = per_task[task][1]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _files.replace_atomically(path, buffer.getvalue())


def load_network(path):
    """Reads a `Network` written by `save_network`."""
    with np.load(path, allow_pickle=False) as arrays:
        meta = json.loads(str(arrays["meta"]))
        outcomes = {
            split: {
                task: (
                    arrays[f"{split}_loss_{i}"],
                    arrays[f"{split}_error_{i}"],
                )
                for i, task in enumerate(meta["tasks"])
            }
            for split in meta["splits"]
        }
    return Network(
        tuple(meta["tasks"]),
        int(meta["seed"]),
        float(meta["seconds"]),
        int(meta["epochs"]),
        outcomes,
        dict(meta.get("fingerprints") or {}),
    )


#: What reading a damaged or foreign `.npz` can raise.
_DAMAGED = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    TypeError,
    zipfile.BadZipFile,
    zlib.error,
    json.JSONDecodeError,
)


class NetworkStore:
    """The networks trained so far, in memory and (with a directory) on
    disk, one `.npz` per (group, seed), so that a rerun finds them.

    Args:
        directory: Where the `.npz` files are kept; None: memory only.
        fingerprints: Part -> digest every stored network must carry
            (`tag_keras.train.fingerprint`); a read-back one that differs
            is stale.
        log: Called with one line per stale or damaged file.
        per_group: `per_group(group) -> {part: digest}`, the parts that
            depend on the group (its built architecture).
    """

    def __init__(
        self,
        directory: str | None = None,
        fingerprints=None,
        log=None,
        per_group=None,
    ):
        self.directory = directory
        self.fingerprints = dict(fingerprints or {})
        self._per_group: Callable = per_group or (lambda group: {})
        self._expected: dict = {}
        self._log = log or (lambda line: None)
        self._told_legacy = False
        self._networks: dict = {}

    def expect(self, group, seed, **parts) -> None:
        """Overrides the fingerprint parts a network must carry (e.g. a
        saved model added as it is: its file's digest as "model", and no
        "architecture"); a part given as None is not checked."""
        self._expected[(frozenset(group), int(seed))] = parts

    def wanted(self, group, seed) -> dict:
        """The fingerprints the network of `group` at `seed` must carry."""
        override = self._expected.get((frozenset(group), int(seed)), {})
        parts = {**self.fingerprints}
        if "architecture" not in override:
            parts.update(self._per_group(tuple(group)))
        parts.update(override)
        return {k: v for k, v in parts.items() if v is not None}

    def get(self, group, seed) -> Network | None:
        """The network of `group` (any order) at `seed`, or None.

        A cached file that cannot be read is named in one line and moved
        aside (`.damaged`); one made from other data, model code or fit
        settings is named with what changed and left to be retrained.
        """
        key = (frozenset(group), int(seed))
        if key in self._networks:
            return self._networks[key]
        path = None if self.directory is None else self._path(group, seed)
        if path is None or not os.path.exists(path):
            return None
        name = f"({', '.join(group)}) seed {seed}"
        try:
            network = load_network(path)
        except _DAMAGED as error:
            aside = path + ".damaged"
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            self._log(
                f"Damaged cache file {path} for {name} "
                f"({type(error).__name__}: "
                f"{' '.join(str(error).split())[:120]}): moved to "
                f"{aside}; training it again."
            )
            return None
        if set(network.tasks) != set(group) or network.seed != seed:
            return None  # A hash collision: train it again.
        if not network.fingerprints:
            if not self._told_legacy:
                self._log(
                    f"Networks in {self.directory} were cached by a "
                    "tag_keras without fingerprints: reused as they "
                    "are, unchecked; delete them to retrain."
                )
                self._told_legacy = True
            self._networks[key] = network
            return network
        stale = fingerprint_lib.changed(
            network.fingerprints, self.wanted(group, seed)
        )
        if stale:
            self._log(
                f"Stale network {name} in {path}: its "
                f"{' and '.join(stale)} changed since it was trained;"
                " training it again."
            )
            return None
        self._networks[key] = network
        return network

    def put(self, network: Network) -> None:
        """Keeps `network`, and writes it when there is a directory."""
        self.keep(network)
        if self.directory is not None:
            os.makedirs(self.directory, exist_ok=True)
            save_network(self._path(network.tasks, network.seed), network)

    def keep(self, network: Network) -> Network:
        """Keeps `network` in memory only (its file is written already)."""
        self._networks[(frozenset(network.tasks), network.seed)] = network
        return network

    def path(self, group, seed) -> str | None:
        """The cache file of `group` at `seed` (None without a directory)."""
        return None if self.directory is None else self._path(group, seed)

    def all(self) -> list:
        """Every network kept so far (read back ones included)."""
        return list(self._networks.values())

    def _path(self, group, seed):
        return os.path.join(self.directory, group_key(group, seed) + ".npz")


class GroupTrainer:
    """Trains each distinct group of tasks once per seed, and keeps it.

    Args:
        build: `build(tasks) -> compiled keras.Model` with one output per
            task of the list it is given, keyed by task name.
        data: `{"train", "validation"[, "test"]}` (`tag_keras.train.data`).
        seeds: Training seeds; every group is trained once per seed.
        fit_kwargs: Passed to `model.fit` (e.g. `epochs`, `callbacks` such
            as `EarlyStopping`); not `validation_data`. A callback that
            monitors a validation quantity reads the data's
            "early_stopping" split, or else a slice carved from the
            training arrays (`data.monitored_split`), never the
            validation split, which decides.
        batch_size: Training batch size for array data.
        directory: Where networks are stored (`networks/` inside it);
            None keeps them in memory only.
        distribution: Optional `tf.distribute.Strategy`, whose scope
            builds every model.
        log: Called with one progress line per network (None: silent).
        eval_batch_size: Examples per forward pass when evaluating arrays.
        tasks: The tasks to serve (default: every task the training split
            has labels for), in this order.
        executor: Where the missing networks train
            (`tag_keras.train.executors`): None, one after another in this
            process; a `RayExecutor`, as Ray tasks in parallel.
        data_function: The function that returned `data`, called again
            (once per worker process) by an executor whose workers cannot
            be sent `data` (a `tf.data.Dataset` cannot be pickled).
    """

    def __init__(
        self,
        build: Callable,
        data: Mapping,
        *,
        seeds: Sequence[int] = (0,),
        fit_kwargs: Mapping | None = None,
        batch_size: int = 32,
        directory: str | None = None,
        distribution: tf.distribute.Strategy | None = None,
        log: Callable | None = print,
        eval_batch_size: int = 256,
        tasks: Sequence[str] | None = None,
        executor: RayExecutor | None = None,
        data_function: Callable | None = None,
    ):
        from tag_keras import _keras_private

        _keras_private.check_backend(what="GroupTrainer (tag-train)")
        if not callable(build):
            raise TypeError(
                "`build` must be a function of a list of task "
                f"names. Received: build={build!r}"
            )
        self.splits = data_lib.check_splits(data)
        self.build, self.data = build, data
        self.seeds = _check_seeds(seeds)
        self.fit_kwargs = _check_fit_kwargs(fit_kwargs)
        self.label_tasks = data_lib.label_tasks(data["train"])
        self.tasks = _check_tasks(tasks, self.label_tasks)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.directory = (
            None if directory is None else os.path.join(directory, "networks")
        )
        self.distribution = distribution
        self._log = log or (lambda line: None)
        self.executor = executor
        self.data_function = data_function
        self.fingerprints = {
            "data": fingerprint_lib.data_digest(data),
            "model": fingerprint_lib.build_digest(build),
            "fit": fingerprint_lib.fit_digest(
                self.fit_kwargs, self.batch_size
            ),
        }
        self._architectures: dict = {}
        self._store = NetworkStore(
            self.directory,
            self.fingerprints,
            log=self._log,
            per_group=self._architecture,
        )
        self._fit_train, self._fit_validation, self.early_stopping = (
            data_lib.monitored_split(data, self.fit_kwargs.get("callbacks"))
        )

    def use(
        self,
        executor: RayExecutor | None,
        data_function: Callable | None = None,
    ) -> GroupTrainer:
        """Trains the missing networks on `executor` from now on (None:
        in this process), with `data_function` as in the constructor.
        Returns self."""
        self.executor = executor
        if data_function is not None:
            self.data_function = data_function
        return self

    def ordered(self, group: Iterable[str]) -> tuple:
        """`group` in the data's task order; raises for unknown tasks."""
        group = set(group)
        unknown = sorted(group - set(self.tasks), key=str)
        if unknown or not group:
            raise ValueError(
                f"A group must hold tasks the data has labels for: "
                f"{self.tasks}. Received: group {sorted(group, key=str)}"
            )
        return tuple(t for t in self.tasks if t in group)

    def has(self, group: Iterable[str], seed: int) -> bool:
        """Whether the network of `group` at `seed` is trained (or stored)."""
        return self._store.get(self.ordered(group), seed) is not None

    def network(self, group: Iterable[str], seed: int) -> Network:
        """The network of `group` at `seed`, trained now if missing."""
        group = self.ordered(group)
        found = self._store.get(group, seed)
        if found is None:
            found = self._train(group, seed)
        return found

    def expect_model(
        self, group: Iterable[str], seed: int, digest: str
    ) -> None:
        """Declares that the network of `group` at `seed` is a saved model
        added as it is, whose file has fingerprint `digest`
        (`fingerprint.file_digest`): a cached one made from another file
        is stale. Call before `has` and `add_model`."""
        self._store.expect(
            self.ordered(group), seed, model=digest, architecture=None
        )

    def add_model(
        self,
        model: keras.Model,
        seed: int,
        *,
        seconds: float = math.nan,
        epochs: int = 0,
    ) -> Network:
        """Stores an already trained `model` (e.g. the measuring run's
        all-task `TaskAffinityModel`) as the network of its outputs' tasks
        at `seed`; it is evaluated, not trained."""
        group = self.ordered(
            [t for t in self.tasks if t in set(output_keys(model))]
        )
        network = Network(
            group,
            int(seed),
            float(seconds),
            int(epochs),
            evaluate(
                model, self.data, group, self.label_tasks, self.eval_batch_size
            ),
            self._store.wanted(group, seed),
        )
        self._store.put(network)
        return network

    def add(self, network: Network) -> None:
        """Stores a `Network` obtained elsewhere (its group and seed)."""
        self.ordered(network.tasks)
        self._store.put(network)

    def train(
        self,
        groups: Iterable[Iterable[str]],
        seeds: Sequence[int] | None = None,
    ) -> list:
        """Trains every (group, seed) not trained yet; returns them all.

        One progress line per network trained, with the time so far and
        an estimate of the time left.
        """
        seeds = self.seeds if seeds is None else list(seeds)
        wanted = list(dict.fromkeys(self.ordered(g) for g in groups))
        todo = [
            (g, s)
            for g in wanted
            for s in seeds
            if self._store.get(g, s) is None
        ]
        start = time.perf_counter()
        finished = []

        def done(network):
            finished.append(network)
            i = len(finished)
            elapsed = time.perf_counter() - start
            left = elapsed / i * (len(todo) - i)
            self._log(
                f"[{i}/{len(todo)}] ({', '.join(network.tasks)}) seed "
                f"{network.seed}: {network.epochs} epochs in "
                f"{network.seconds:.1f} s, validation loss "
                f"{_total(network, 'validation'):.4g}; {elapsed:.0f} s "
                f"so far, about {left:.0f} s left"
            )

        if self.executor is None or not todo:
            for group, seed in todo:
                done(self._train(group, seed))
        else:
            self.executor.run(
                self.recipe(),
                [
                    (g, s, self._store.wanted(g, s), self._store.path(g, s))
                    for g, s in todo
                ],
                lambda n: done(self._store.keep(n)),
            )
        return [self.network(g, s) for g in wanted for s in seeds]

    def stored(self) -> list:
        """Every network trained, added or read back so far."""
        return self._store.all()

    def _architecture(self, group):
        """`{"architecture": digest}` of the group's model, built once in
        a fresh Keras session (`fingerprint.architecture_digest`)."""
        group = self.ordered(group)
        if group not in self._architectures:
            import keras

            # Nothing is traced here, so no garbage collection is needed.
            keras.backend.clear_session(free_memory=False)
            scope = (
                contextlib.nullcontext()
                if self.distribution is None
                else self.distribution.scope()
            )
            with scope:
                model = self.build(list(group))
            self._architectures[group] = fingerprint_lib.architecture_digest(
                model
            )
            del model
            keras.backend.clear_session(free_memory=False)
        return {"architecture": self._architectures[group]}

    def recipe(self) -> Recipe:
        """Everything that trains one network, for `train_network`
        (picklable when the model function and data are)."""
        return Recipe(
            self.build,
            self.data,
            self._fit_train,
            self._fit_validation,
            self.fit_kwargs,
            self.batch_size,
            self.eval_batch_size,
            tuple(self.label_tasks),
            self.distribution,
            self.data_function,
        )

    def _train(self, group, seed):
        network = train_network(
            self.recipe(), group, seed, self._store.wanted(group, seed)
        )
        self._store.put(network)
        return network


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What training one network needs: the model function, the data and
    the fit settings (see `GroupTrainer`)."""

    build: Callable
    data: Mapping | None
    fit_train: object
    fit_validation: object
    fit_kwargs: Mapping
    batch_size: int
    eval_batch_size: int
    label_tasks: tuple
    distribution: object = None
    data_function: Callable | None = None

    def shippable(self) -> Recipe:
        """This recipe as it can be sent to another process: with the data
        when it is arrays, else without it (the worker calls
        `data_function`; `rebuilt` there).

        Raises:
            ValueError: The data holds a `tf.data.Dataset` or a
                `PyDataset` and there is no `data_function`.
        """
        import keras
        import tensorflow as tf

        streams = (tf.data.Dataset, keras.utils.PyDataset)
        splits = (self.data or {}).values()
        if not any(isinstance(split, streams) for split in splits):
            return self
        if self.data_function is None:
            raise ValueError(
                "The data holds a tf.data.Dataset or PyDataset, which cannot"
                " be sent to Ray workers; give GroupTrainer the function "
                "that returns the data (`data_function`) so each worker "
                "builds it, or give numpy arrays."
            )
        return dataclasses.replace(
            self, data=None, fit_train=None, fit_validation=None
        )

    def rebuilt(self) -> Recipe:
        """A recipe from `shippable` with its data built again here."""
        if self.data is not None:
            return self
        if self.data_function is None:
            raise ValueError(
                "A recipe without its data needs the function that returns "
                "it (`data_function`). Received: data_function=None"
            )
        data = self.data_function()
        fit_train, fit_validation, _ = data_lib.monitored_split(
            data, self.fit_kwargs.get("callbacks")
        )
        return dataclasses.replace(
            self, data=data, fit_train=fit_train, fit_validation=fit_validation
        )


def train_network(
    recipe: Recipe,
    group: tuple,
    seed: int,
    fingerprints: Mapping | None = None,
) -> Network:
    """Trains and evaluates the network of `group` at `seed`.

    It depends only on the recipe, the group and the seed: the Keras
    session is cleared and every random generator seeded first, so that
    nothing carries over from a network trained before in this process.

    Raises:
        NonFiniteLossError: The loss is not finite.
    """
    import keras

    from tag_keras import _keras_private

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    # The model is dropped on return: its traced steps must not stay
    # registered (`forgetting_custom_gradients`), or each network kept
    # its graphs alive for the rest of the process.
    with _keras_private.forgetting_custom_gradients():
        network, losses = _fit_and_evaluate(recipe, group, seed, fingerprints)
    _check_finite(network, losses)
    return network


def _fit_and_evaluate(recipe, group, seed, fingerprints):
    scope = (
        contextlib.nullcontext()
        if recipe.distribution is None
        else recipe.distribution.scope()
    )
    with scope:
        model = recipe.build(list(group))
    _check_model(model, group)
    start = time.perf_counter()
    monitored = (
        None
        if recipe.fit_validation is None
        else data_lib.fit_data(
            recipe.fit_validation,
            group,
            batch_size=recipe.batch_size,
            shuffle=False,
        )
    )
    history = model.fit(
        data_lib.fit_data(
            recipe.fit_train, group, batch_size=recipe.batch_size, seed=seed
        ),
        validation_data=monitored,
        **{"verbose": 0, **recipe.fit_kwargs, "shuffle": False},
    )
    seconds = time.perf_counter() - start
    epochs = len(next(iter(history.history.values()), []))
    network = Network(
        tuple(group),
        int(seed),
        seconds,
        epochs,
        evaluate(
            model,
            recipe.data,
            group,
            recipe.label_tasks,
            recipe.eval_batch_size,
        ),
        dict(fingerprints or {}),
    )
    return network, history.history.get("loss", [])


def evaluate(model, data, group, label_tasks, batch_size):
    """Split -> task -> `(losses, errors)` per example, on every split of
    `EVALUATED` that `data` holds."""
    return {
        split: outcomes_lib.evaluate_network(
            model, data[split], group, label_tasks, batch_size
        )
        for split in EVALUATED
        if split in data
    }


def output_keys(model) -> list:
    """The task names a model's outputs are keyed by: the keys of a dict
    of outputs (what `predict` returns), else the output layers' names."""
    try:
        structure = model.output
    except (AttributeError, ValueError):  # not built, or subclassed
        structure = None
    if isinstance(structure, dict):
        return [str(key) for key in structure]
    outputs = getattr(model, "output_names", None) or []
    return [str(name) for name in outputs]


def _check_seeds(seeds):
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(
            "`seeds` must be distinct integers, at least "
            f"one. Received: seeds={seeds}"
        )
    return seeds


def _check_fit_kwargs(fit_kwargs):
    fit_kwargs = dict(fit_kwargs or {})
    if "validation_data" in fit_kwargs or "x" in fit_kwargs:
        raise ValueError(
            "`fit_kwargs` may not hold `x` or `validation_data`: the "
            "trainer passes the data's splits. Received: fit_kwargs "
            f"keys {sorted(fit_kwargs)}"
        )
    return fit_kwargs


def _check_tasks(tasks, labelled):
    tasks = labelled if tasks is None else [str(t) for t in tasks]
    unknown = sorted(set(tasks) - set(labelled), key=str)
    if unknown or len(set(tasks)) != len(tasks):
        raise ValueError(
            "`tasks` must be distinct tasks the training data has "
            f"labels for: {labelled}. Received: tasks={tasks}"
        )
    return tasks


def _check_model(model, group):
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(
            "The model function must return a compiled keras.Model. "
            f"Received: {type(model).__name__} for tasks {list(group)}"
        )
    if not getattr(model, "compiled", False):
        raise ValueError(
            "The model function must return a compiled model (call "
            f"model.compile). Received: an uncompiled model for tasks "
            f"{list(group)}"
        )


class NonFiniteLossError(ValueError):
    """A network's loss is not finite: nothing can be decided from it."""


def _check_finite(network, losses):
    """Raises `NonFiniteLossError` naming the network when its training
    loss ended non-finite, or a task's evaluated loss is infinite or NaN
    on every example of a split."""
    name = f"({', '.join(network.tasks)}) seed {network.seed}"
    if len(losses) and not np.isfinite(losses[-1]):
        raise NonFiniteLossError(
            f"The network {name} ended training with loss {losses[-1]}: "
            "check the inputs for NaN or Inf, and the learning rate. "
            "Nothing is decided from non-finite losses."
        )
    for split, per_task in network.outcomes.items():
        for task, (loss, _) in per_task.items():
            if np.isinf(loss).any() or np.isnan(loss).all():
                raise NonFiniteLossError(
                    f"The network {name} has a non-finite {split} loss for "
                    f"task {task!r}: check the inputs for NaN or Inf. "
                    "Nothing is decided from non-finite losses."
                )


def _total(network, split):
    return sum(network.mean(split, t) for t in network.tasks)
