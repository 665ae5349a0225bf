"""The work of the decision benchmark: measuring runs, decisions, truth.

For one task set and each measuring seed m:

1. TAG as released: the all-task `TaskAffinityModel` measuring lookahead
   affinity every 10 steps, seed m; `select_groups` per budget; the
   affinity structure (`tag_keras.select.stability`, 100 resamples).
2. The validated decision (`tag_keras.train.decide`, validation split
   only, three answers, default metric and margin): each budget's TAG
   grouping and the all-task network trained under `decision_seeds(m)`
   (3 seeds, then 5 and 8 for the budgets still undecided).

The truth: every network the answers need (the all-task network, each
task alone, every TAG grouping of every measuring seed, `rg_samples`
random partitions per budget) trained under the truth seeds 500, 501, ...
(10 by default), none of them used by a measuring run or a decision; its
test error is the mean over those seeds. Every unit is cached: the
measuring units as JSON and the truth as one table per task set
(`truth.csv`: each (group, seed, task)'s mean errors and losses), both
small enough to commit, so that a rerun on a clean clone trains only what
is missing; the networks themselves (`GroupTrainer`'s `networks/`) stay
local.
"""

import dataclasses
import functools
import json
import os
import time

import numpy as np

from experiments import data as data_lib
from experiments.lib import measure as measure_lib
from experiments.lib import training
from tag_keras import InputError
from tag_keras import select as select_lib
from tag_keras.select import readers
from tag_keras.select import stability as stability_lib

#: Seeds of the truth's networks (kept apart from measuring seeds).
TRUTH_SEED_BASE = 500
#: The mnist task set: seven of the digit attributes.
MNIST_TASKS = ("is_even", "is_prime", "is_multiple_of_3", "greater_than_4",
               "has_closed_loop", "has_vertical_stroke",
               "has_horizontal_bar")


@dataclasses.dataclass(frozen=True)
class TaskSet:
    """A benchmark problem: its data and the protocol of every network."""

    name: str
    data: object
    config: training.TrainConfig


def load_task_set(name, epochs=None):
    """The task set called `name` (see `TASK_SETS`)."""
    if name not in TASK_SETS:
        raise InputError(
            f"Task sets are {sorted(TASK_SETS)}. Received: {name!r}")
    dataset, options, config_name, *overrides = TASK_SETS[name]
    data = data_lib.load_dataset(dataset, **{"seed": 0, **options})
    config = training.default_config(config_name, epochs=epochs)
    if overrides:
        config = dataclasses.replace(config, **overrides[0])
    return TaskSet(name, data, config)


#: name -> (dataset, loader options, protocol of DEFAULT_CONFIGS[,
#: protocol overrides]).
TASK_SETS = {
    # The default job: the nine digit attributes.
    "digits9": ("digits", {}, "digits"),
    # Seven attributes of the real 28x28 MNIST digits.
    "mnist7": ("mnist", {"tasks": MNIST_TASKS}, "mnist"),
    # Built so that pooling helps: seven tasks of one latent direction,
    # each with 30% of its labels flipped independently, few examples.
    "pooled": ("planted", {"num_clusters": 1, "tasks_per_cluster": 7,
                           "num_noise_tasks": 0, "perturbation": 0.05,
                           "label_noise": 0.3, "num_train": 600,
                           "num_validation": 300, "num_test": 1000},
               "planted"),
    # The calibration benchmark's three sets.
    "planted": ("planted", {}, "planted"),
    # The calibration benchmark's seven digit attributes (DIGITS_TASKS).
    "digits7": ("digits", {"tasks": (
        "is_even", "is_prime", "greater_than_4", "has_closed_loop",
        "has_upper_loop", "has_lower_loop", "has_vertical_stroke")},
        "digits"),
    "planted3": ("planted", {"seed": 1, "num_clusters": 3,
                             "tasks_per_cluster": 2, "num_noise_tasks": 1},
                 "planted"),
    # Where splitting wins on real digits: the ten one-vs-rest tasks
    # is_0 ... is_9 through a narrow shared CNN (width 2: 2 and 4
    # channels, 8 shared units). A pilot (seeds 0-1, test split): the
    # all-task network 39.4 and 28.2 summed error %, two networks of five
    # tasks 20.4 and 20.7; at width 4 the all-task network was better
    # (12.3, 12.5 against 13.2, 16.7).
    "mnist_bottleneck": ("mnist", {"tasks": tuple(
        f"is_{d}" for d in range(10))}, "mnist", {"width": 2}),
}


#: Tasks per set (the cost table's HOA and exhaustive counts).
TASK_COUNTS = {"digits9": 9, "mnist7": 7, "pooled": 7, "planted": 7,
               "digits7": 7, "planted3": 7, "mnist_bottleneck": 10}


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def write_json(path, value):
    from tag_keras import _files

    os.makedirs(os.path.dirname(path), exist_ok=True)
    _files.replace_atomically(path, json.dumps(value, indent=2,
                                               allow_nan=False))


#: The version of a measuring unit's JSON; older units are recomputed
#: (3: the three-way decision, sequential up to `MAX_SEEDS` seeds).
UNIT_VERSION = 3
#: The most seeds a decision trains (its looks: 3, 5, 8).
MAX_SEEDS = 8
#: Decision seeds of measuring seed m: 1000 + 100 m + 0, 1, 2, ...
DECISION_SEED_BASE = 1000


def decision_seeds(seed):
    """The first three decision seeds of measuring seed `seed`; the
    decision extends them with the next integers, so measuring seeds
    never share a decision seed (up to 100 seeds each)."""
    base = DECISION_SEED_BASE + 100 * seed
    return [base, base + 1, base + 2]


def measure_and_decide(task_set, seed, directory, budgets, *, resamples=100,
                       max_seeds=MAX_SEEDS, log=print, executor=None):
    """The measuring run of `seed` and both affinity answers; cached.
    The decision's networks train on `executor` (None: in this process).

    Returns the JSON-ready unit: per budget the TAG grouping, its affinity
    structure and the validated decision (answer, bounds, margin, seeds
    used), and the costs.
    """
    path = os.path.join(directory, f"measure_{seed}.json")
    if os.path.exists(path):
        unit = read_json(path)
        if unit.get("version") == UNIT_VERSION:
            return unit
    from tag_keras import train

    data = task_set.data
    config = dataclasses.replace(task_set.config, seed=seed)
    run_dir = os.path.join(directory, f"run_{seed}")
    start = time.perf_counter()
    result, affinity = measure_lib.measure(data, config, run_dir,
                                           tensorboard=False)
    measure_seconds = time.perf_counter() - start
    steps = readers.read_table(
        os.path.join(run_dir, "affinity", "affinity_steps.csv"),
        readers.NAME_COLUMNS["affinity_steps.csv"])
    budgets = [b for b in budgets if b <= len(data.tasks)]
    assessed = stability_lib.assess(steps, budgets, tasks=list(data.tasks),
                                    resamples=resamples, seed=seed)
    groupings = {b: select_lib.select_groups(affinity, b) for b in budgets}
    engine = decision_engine(task_set, seed, directory, executor)
    start = time.perf_counter()
    decision = train.decide(
        engine, {b: [(g.groups, dict(g.serve))]
                 for b, g in groupings.items()}, max_seeds=max_seeds)
    decide_seconds = time.perf_counter() - start
    unit = {"version": UNIT_VERSION, "seed": seed,
            "measure_seconds": measure_seconds,
            "decision_seconds": decide_seconds,
            "decision_networks": len(engine.stored()),
            "decision_seeds": list(decision.seeds), "budgets": {}}
    for option in decision.budgets:
        unit["budgets"][str(option.num_groups)] = {
            "groups": [list(g) for g in option.groups],
            "serve": option.serve,
            "affinity_structure": assessed[option.num_groups][1]
            .affinity_structure, **unit_fields(option)}
    write_json(path, unit)
    log(f"    {task_set.name} seed {seed}: measured in {measure_seconds:.0f}"
        f" s, decided in {decide_seconds:.0f} s: " + ", ".join(
            f"{b}: {u['affinity_structure']} / {u['decision']} "
            f"({u['seeds']} seeds)" for b, u in unit["budgets"].items()))
    return unit


#: The `Option` fields a unit keeps per budget.
UNIT_FIELDS = (
    "decision", "answer_detail", "difference", "low", "high",
    "standard_error", "metric", "margin", "seeds", "seeds_needed",
    "validation_factor", "other_metric", "other_difference", "other_low",
    "other_high", "test_difference", "test_low", "test_high")


def unit_fields(option):
    """The JSON-ready `UNIT_FIELDS` of a decision `Option`."""
    entry = option.to_dict()
    return {name: entry[name] for name in UNIT_FIELDS}


def decision_engine(task_set, seed, directory, executor=None):
    """The `GroupTrainer` of measuring seed `seed`'s validated decision,
    starting at `decision_seeds(seed)`, cached under `decision_<m>/`."""
    config = dataclasses.replace(task_set.config, seed=seed)
    return on_executor(training.seeded_trainer(
        task_set.data, config, decision_seeds(seed),
        directory=os.path.join(directory, f"decision_{seed}"), log=None),
        executor, task_set.data, config)


def on_executor(engine, executor, data, config):
    """`engine` training on `executor` (data rebuilt in a worker when it
    is streamed)."""
    return engine.use(executor, functools.partial(training.group_data, data,
                                                  config))


#: Columns of a truth table, after `group` and `seed`.
TRUTH_COLUMNS = ("task", "test_error", "test_loss", "validation_error",
                 "validation_loss")


class Truth:
    """The truth's networks of one task set, each (group, seed) trained
    once and kept as its per-task means in `directory/truth.csv`.

    Args:
        task_set: The `TaskSet`.
        directory: The task set's cache directory.
        seeds: How many truth seeds (500, 501, ...).
        log: Called with one line per network trained.
        executor: Where the networks train (None: in this process).
    """

    def __init__(self, task_set, directory, seeds, log=print, executor=None):
        self.tasks = tuple(task_set.data.tasks)
        self.seeds = [TRUTH_SEED_BASE + i for i in range(seeds)]
        self.path = os.path.join(directory, "truth.csv")
        self.engine = on_executor(training.seeded_trainer(
            task_set.data, task_set.config, self.seeds,
            directory=os.path.join(directory, "truth"), log=log),
            executor, task_set.data, task_set.config)
        self.table = {}
        if os.path.exists(self.path):
            import pandas as pd

            frame = pd.read_csv(self.path)
            for row in frame.to_dict("records"):
                key = (self.ordered(row["group"].split("+")), int(row["seed"]))
                self.table.setdefault(key, {})[row["task"]] = row

    def ordered(self, group):
        group = set(group)
        return tuple(t for t in self.tasks if t in group)

    def train(self, groups):
        """Trains every (group, truth seed) not in the table yet, writing
        the table after each group (on an executor, the groups missing the
        same seeds at once)."""
        missing = {}
        for group in dict.fromkeys(self.ordered(g) for g in groups):
            seeds = tuple(s for s in self.seeds
                          if (group, s) not in self.table)
            if seeds:
                missing[group] = seeds
        if self.engine.executor is None:
            batches = [([group], seeds) for group, seeds in missing.items()]
        else:
            together = {}
            for group, seeds in missing.items():
                together.setdefault(seeds, []).append(group)
            batches = [(groups, seeds) for seeds, groups in together.items()]
        for batch, seeds in batches:
            for network in self.engine.train(batch, list(seeds)):
                group = self.ordered(network.tasks)
                self.table[(group, network.seed)] = {
                    task: {"group": "+".join(group), "seed": network.seed,
                           "task": task, **{
                               f"{split}_{metric}": network.mean(
                                   split, task, metric)
                               for split in ("test", "validation")
                               for metric in ("error", "loss")}}
                    for task in group}
            self._write()

    def _write(self):
        import pandas as pd

        rows = [row for key in sorted(self.table, key=lambda k: (
            len(k[0]), k[0], k[1])) for row in self.table[key].values()]
        frame = pd.DataFrame(rows, columns=("group", "seed") + TRUTH_COLUMNS)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        from tag_keras import _files

        _files.replace_atomically(self.path, frame.to_csv(index=False))

    def mean(self, group, seed, task, column="test_error"):
        """The mean `column` of `task` in `group`'s network at `seed`."""
        return float(self.table[(self.ordered(group), seed)][task][column])


def truth(task_set, units, directory, budgets, *, seeds=10, rg_samples=4,
          log=print, executor=None):
    """`(Truth, random partitions per budget)`: every network the truth
    needs, trained under `seeds` truth seeds (on `executor`)."""
    from tag_keras.train import random_groupings

    tasks = task_set.data.tasks
    known = Truth(task_set, directory, seeds, log=log, executor=executor)
    random = {b: random_groupings.random_partitions(
        tasks, b, rg_samples, seed=b)
        for b in budgets if b <= len(tasks)}
    needed = [tuple(tasks)] + [(t,) for t in tasks]
    needed += [tuple(g) for unit in units for entry in unit["budgets"].values()
               for g in entry["groups"]]
    needed += [g for partitions, _ in random.values() for p in partitions
               for g in p]
    known.train(needed)
    return known, random


def total_errors(truth, groups, serve):
    """`[truth seeds]`: the served total test error (%) per truth seed."""
    return np.array([100 * sum(truth.mean(groups[i], s, t)
                               for t, i in serve.items())
                     for s in truth.seeds])
