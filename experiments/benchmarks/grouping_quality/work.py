"""The units of work of the exhaustive grouping benchmarks, cached.

A `TaskSet` is one benchmark problem; a `SeedWork` trains (or reads from
its JSON cache) every group network and every all-task measurement run
(`Variant`) of one task set and one seed. Flag-free: the benchmark
binaries (`grouping_quality`, `calibration`) share it.
"""

import dataclasses
import json
import os
import tempfile

from experiments.lib import timing
from experiments.lib import training
from experiments.benchmarks.grouping_quality import report as gq_report
from tag_keras import InputError

# Seven of the nine digit attributes: arithmetic ones and shape ones.
DIGITS_TASKS = ("is_even", "is_prime", "greater_than_4", "has_closed_loop",
                "has_upper_loop", "has_lower_loop", "has_vertical_stroke")
# The paper measures every 10 steps; its ablation frequencies.
TAG_EVERY = 10
FREQUENCIES = (1, 5, 10, 25, 50, 100)


@dataclasses.dataclass(frozen=True)
class TaskSet:
    """One benchmark problem.

    Attributes:
        data: A `MultiTaskData` (its split is fixed).
        config: The `training.TrainConfig` of every network; its `seed` is
            replaced by each benchmark seed.
    """

    data: object
    config: training.TrainConfig

    @property
    def name(self):
        return self.data.name

    @property
    def tasks(self):
        return tuple(self.data.tasks)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One all-task measurement run.

    Attributes:
        name: Cache and table name, e.g. "lookahead_every_10".
        method: "lookahead", "first_order", "cosine" or "plain" (a plain
            `keras.Model`, no measurement: the timing baseline).
        every: Measure every this many steps (0 for "plain").
        held_out: Measure the lookahead losses on validation batches.
        write_steps: Keep `affinity_steps.csv` (for the window ablation
            and the affinity structure).
        step: `TaskAffinityModel(lookahead_step=...)`.
        sources: `TaskAffinityModel(affinity_sources=...)`; with groups,
            `group_affinity.csv` is kept beside the run's affinity.
    """

    name: str
    method: str
    every: int
    held_out: bool = False
    write_steps: bool = False
    step: str = "optimizer"
    sources: str = "tasks"


def variants(frequencies=FREQUENCIES, tag_every=TAG_EVERY):
    """The measurement runs: plain, lookahead at each frequency, the rest.

    Every 1 step is always included (its per-step rows give the
    quarter-of-training windows), and so is `tag_every` (TAG).
    """
    every = sorted({int(f) for f in frequencies} | {1, tag_every})
    if every[0] < 1:
        raise ValueError("`frequencies` must be integers >= 1. Received: "
                         f"frequencies={list(frequencies)}")
    return ([Variant("plain", "plain", 0)]
            + [Variant(f"lookahead_every_{k}", "lookahead", k,
                       write_steps=k == 1) for k in every]
            + [Variant(f"first_order_every_{tag_every}", "first_order",
                       tag_every),
               Variant(f"validation_every_{tag_every}", "lookahead",
                       tag_every, held_out=True),
               Variant("cosine_every_1", "cosine", 1)])


def subsets(tasks):
    """Every non-empty group of `tasks`, by size, each in task order."""
    tasks = tuple(tasks)
    return [tuple(t for i, t in enumerate(tasks) if mask >> i & 1)
            for mask in sorted(range(1, 2 ** len(tasks)),
                               key=lambda m: (bin(m).count("1"), m))]


def write_json(path, document):
    """Writes `document` to `path` atomically (temp file, then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        json.dump(document, out, indent=1)
    os.replace(temp, path)


def read_json(path):
    """The JSON document at `path`, or None if there is none yet."""
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def _record(result, timer):
    return {
        "tasks": list(result.tasks),
        "test_error": dict(result.test_error),
        "validation_loss": dict(result.validation_loss),
        "epochs": result.epochs, "best_epoch": result.best_epoch,
        "seconds": result.seconds,
        "epoch_seconds": timer.seconds, "epoch_steps": timer.steps,
    }


class SeedWork:
    """The cached units of work of one task set and one seed.

    `network(group)` and `run(variant)` return a unit's record, training
    it first if it is not cached (or None with `train=False`). The counts
    `networks_trained` and `runs_trained` say how many were trained here.

    Args:
        task_set: A `TaskSet`.
        seed: The training seed.
        out_dir: The results folder (units go under `cache/`).
        train: Whether missing units may be trained.
        log: Called with one progress line per unit trained.
    """

    def __init__(self, task_set, seed, out_dir, *, train=True, log=print):
        self.task_set = task_set
        self.seed = seed
        self.config = dataclasses.replace(task_set.config, seed=seed)
        self.dir = gq_report.seed_dir(out_dir, task_set.name, seed)
        self.train = train
        self._log = log
        self.networks_trained = 0
        self.runs_trained = 0

    def network_path(self, group):
        return os.path.join(self.dir, "networks", "+".join(group) + ".json")

    def run_dir(self, variant):
        return os.path.join(self.dir, "runs", variant.name)

    def network(self, group):
        """The record of the network trained on `group` (task order)."""
        path = self.network_path(group)
        record = read_json(path)
        if record is not None or not self.train:
            return record
        import keras

        keras.backend.clear_session()  # Many models in one process.
        timer = timing.EpochTimer()
        result, _ = training.train_network(self.task_set.data, self.config,
                                           tasks=group, callbacks=[timer])
        record = _record(result, timer)
        write_json(path, record)
        self.networks_trained += 1
        self._log(f"    {self.task_set.name} seed {self.seed} network "
                  f"{'+'.join(group)}: {result.epochs} epochs, "
                  f"{result.seconds:.1f} s")
        return record

    def run(self, variant):
        """The record of the all-task measurement run `variant`."""
        run_dir = self.run_dir(variant)
        path = os.path.join(run_dir, "run.json")
        record = read_json(path)
        if record is not None or not self.train:
            return record
        record = self._measure(variant, run_dir)
        write_json(path, record)
        self.runs_trained += 1
        self._log(f"    {self.task_set.name} seed {self.seed} run "
                  f"{variant.name}: {record['epochs']} epochs, "
                  f"{record['seconds']:.1f} s")
        return record

    def _measure(self, variant, run_dir):
        import keras

        import tag_keras

        keras.backend.clear_session()
        data, timer = self.task_set.data, timing.EpochTimer()
        callbacks, kwargs = [timer], {}
        if variant.method != "plain":
            callbacks.insert(0, tag_keras.AffinityLogger(
                os.path.join(run_dir, "affinity"),
                write_steps=variant.write_steps, tensorboard=False))
            kwargs = {
                "model_cls": tag_keras.TaskAffinityModel,
                "affinity_every_n_steps": variant.every,
                "affinity_method": variant.method,
                "cosine_kernels_only": variant.method == "cosine",
                "lookahead_step": variant.step,
                "affinity_sources": variant.sources,
            }
            if variant.held_out:
                kwargs["affinity_data"] = data.batches(
                    "validation", self.config.batch_size)
        result, _ = training.train_network(data, self.config,
                                           callbacks=callbacks, **kwargs)
        record = _record(result, timer)
        steps = int(sum(timer.steps))
        record.update({
            "variant": dataclasses.asdict(variant),
            "steps": steps,
            "measured_steps": (0 if not variant.every
                               else -(-steps // variant.every)),
            "affinity": (None if result.affinity is None
                         else result.affinity.to_dict(orient="index")),
        })
        return record

    def complete(self, groups, runs):
        """Records of every group and run, or None if one is missing."""
        networks = {}
        for i, group in enumerate(groups, start=1):
            if self.train and not os.path.exists(self.network_path(group)):
                self._log(f"[{self.task_set.name} seed {self.seed}] network "
                          f"{i}/{len(groups)}")
            networks[group] = self.network(group)
        records = {v.name: self.run(v) for v in runs}
        if any(r is None for r in networks.values()) or any(
                r is None for r in records.values()):
            return None
        return networks, records


def load_task_sets(datasets, *, planted_tasks=None, digits_tasks=DIGITS_TASKS,
                   epochs=None):
    """The `TaskSet`s named by `datasets` with per-dataset defaults."""
    task_sets = []
    for name in datasets:
        if name not in ("planted", "digits"):
            raise InputError(
                "--datasets must name planted or digits. Received: "
                f"{name!r}")
        tasks = planted_tasks if name == "planted" else digits_tasks
        data = training.load_data(name, tasks=tasks, seed=0)
        if not 2 <= len(data.tasks) <= 10:
            raise InputError(
                f"{name}: between 2 and 10 tasks (2^n - 1 networks each). "
                f"Received: {len(data.tasks)} tasks")
        task_sets.append(TaskSet(data, training.default_config(
            name, epochs=epochs)))
    return task_sets
