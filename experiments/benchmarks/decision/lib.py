"""The work of the decision benchmark: measuring runs, decisions, truth.

For one task set and each measuring seed m:

1. TAG as released: the all-task `TaskAffinityModel` measuring lookahead
   affinity every 10 steps, seed m; `select_groups` per budget; the
   affinity structure (`tag_keras.select.stability`, 100 resamples).
2. The validated decision (`tag_keras.train.decide`, validation split
   only): each budget's TAG grouping trained under seeds m, m + 1000,
   m + 2000 (the all-task network of seed m is the measuring run's) and
   compared with the all-task network.

The truth: every network the answers need (the all-task network, each
task alone, every TAG grouping of every measuring seed, `rg_samples`
random partitions per budget) trained under the truth seeds 500, 501, ...,
none of them used by a measuring run or a decision; its test error is the
mean over those seeds. Every unit is cached (JSON, `GroupTrainer`'s
`networks/`), so the benchmark resumes where it stopped.
"""

import dataclasses
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
    dataset, options, config_name = TASK_SETS[name]
    data = data_lib.load_dataset(dataset, **{"seed": 0, **options})
    return TaskSet(name, data, training.default_config(config_name,
                                                       epochs=epochs))


#: name -> (dataset, loader options, protocol of DEFAULT_CONFIGS).
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
}


#: Tasks per set (the cost table's HOA and exhaustive counts).
TASK_COUNTS = {"digits9": 9, "mnist7": 7, "pooled": 7, "planted": 7,
               "digits7": 7, "planted3": 7}


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def write_json(path, value):
    from tag_keras import _files

    os.makedirs(os.path.dirname(path), exist_ok=True)
    _files.replace_atomically(path, json.dumps(value, indent=2,
                                               allow_nan=False))


def measure_and_decide(task_set, seed, directory, budgets, *, resamples=100,
                       max_seeds=None, log=print):
    """The measuring run of `seed` and both affinity answers; cached.

    Returns the JSON-ready unit: per budget the TAG grouping, its affinity
    structure and the validated decision with its interval, and the costs.
    """
    path = os.path.join(directory, f"measure_{seed}.json")
    if os.path.exists(path):
        return read_json(path)
    from tag_keras import train

    data = task_set.data
    config = dataclasses.replace(task_set.config, seed=seed)
    run_dir = os.path.join(directory, f"run_{seed}")
    start = time.perf_counter()
    result, affinity, model = measure_lib.measure(
        data, config, run_dir, tensorboard=False, return_model=True)
    measure_seconds = time.perf_counter() - start
    steps = readers.read_table(
        os.path.join(run_dir, "affinity", "affinity_steps.csv"),
        readers.NAME_COLUMNS["affinity_steps.csv"])
    budgets = [b for b in budgets if b <= len(data.tasks)]
    assessed = stability_lib.assess(steps, budgets, tasks=list(data.tasks),
                                    resamples=resamples, seed=seed)
    groupings = {b: select_lib.select_groups(affinity, b) for b in budgets}
    # The measuring run early-stopped on the validation split, which
    # decides: it is not one of the decision's all-task networks.
    del model
    engine = decision_engine(task_set, seed, directory)
    start = time.perf_counter()
    decision = train.decide(
        engine, {b: [(g.groups, dict(g.serve))]
                 for b, g in groupings.items()}, max_seeds=max_seeds)
    decide_seconds = time.perf_counter() - start
    unit = {"seed": seed, "measure_seconds": measure_seconds,
            "decision_seconds": decide_seconds,
            "decision_networks": len(engine.stored()), "budgets": {}}
    for option in decision.budgets:
        budget = option.num_groups
        unit["budgets"][str(budget)] = {
            "groups": [list(g) for g in option.groups],
            "serve": option.serve,
            "affinity_structure": assessed[budget][1].affinity_structure,
            "decision": option.decision, "difference": option.difference,
            "low": option.low, "high": option.high,
            "metric": option.metric, "margin": option.margin,
            "seeds": option.seeds, "seeds_needed": option.seeds_needed,
            "answer_detail": option.answer_detail,
            "standard_error": option.standard_error,
            **error_fields(option)}
    write_json(path, unit)
    log(f"    {task_set.name} seed {seed}: measured in {measure_seconds:.0f}"
        f" s, decided in {decide_seconds:.0f} s: " + ", ".join(
            f"{b}: {u['affinity_structure']} / {u['decision']}"
            for b, u in unit["budgets"].items()))
    return unit


def decision_engine(task_set, seed, directory):
    """The `GroupTrainer` of measuring seed `seed`'s validated decision:
    seeds m, m + 1000, m + 2000, cached under `decision_<m>/`."""
    config = dataclasses.replace(task_set.config, seed=seed)
    return training.seeded_trainer(
        task_set.data, config, [seed, seed + 1000, seed + 2000],
        directory=os.path.join(directory, f"decision_{seed}"), log=None)


def error_fields(option):
    """The validated decision on the error instead of the loss (same
    networks, same interval rule; `tag_keras.train.decide(metric=...)`)."""
    return {"error_difference": option.error_difference,
            "error_low": option.error_low, "error_high": option.error_high}


def with_error_decision(task_set, unit, directory):
    """`unit` with `error_fields` per budget, added from the cached
    decision networks when a unit was made before they were recorded (no
    network is trained when the cache holds them)."""
    if all("error_high" in e for e in unit["budgets"].values()):
        return unit
    from tag_keras import train

    seed = unit["seed"]
    engine = decision_engine(task_set, seed, directory)
    decision = train.decide(
        engine, {int(b): [(tuple(tuple(g) for g in e["groups"]),
                           e["serve"])]
                 for b, e in unit["budgets"].items()}, metric="error")
    for option in decision.budgets:
        unit["budgets"][str(option.num_groups)].update(error_fields(option))
    write_json(os.path.join(directory, f"measure_{seed}.json"), unit)
    return unit


def truth(task_set, units, directory, budgets, *, seeds=3, rg_samples=4,
          log=print):
    """`(engine, random partitions per budget)`: every network the truth
    needs, trained under `seeds` truth seeds."""
    from tag_keras.train import random_groupings

    tasks = task_set.data.tasks
    engine = training.seeded_trainer(
        task_set.data, task_set.config,
        [TRUTH_SEED_BASE + i for i in range(seeds)],
        directory=os.path.join(directory, "truth"), log=log)
    random = {b: random_groupings.random_partitions(
        tasks, b, rg_samples, seed=b)
        for b in budgets if b <= len(tasks)}
    needed = [tuple(tasks)] + [(t,) for t in tasks]
    needed += [tuple(g) for unit in units for entry in unit["budgets"].values()
               for g in entry["groups"]]
    needed += [g for partitions, _ in random.values() for p in partitions
               for g in p]
    engine.train(needed)
    return engine, random


def total_errors(engine, groups, serve):
    """`[truth seeds]`: the served total test error (%) per truth seed."""
    return np.array([100 * sum(engine.network(groups[i], s).mean(
        "test", t, "error") for t, i in serve.items())
        for s in engine.seeds])
