"""Does TAG find the best groups? A benchmark against exhaustive search.

For each task set (the planted tasks and the Digits attributes, 6 to 8
tasks each) and each training seed, it trains:

* every one of the 2^n - 1 task groups, one network each, with the
  protocol of `experiments.training` (same epoch budget, early stopping
  on the validation loss): the ground truth. The singles and pairs among
  them are HOA's networks, the all-task one is MTL, the singles STL;
* all tasks together as a `tag_keras.TaskAffinityModel`, once per
  measurement variant: lookahead affinity every 1, 5, 10, 25, 50, 100
  steps (every 10 is TAG), first-order affinity every 10, lookahead on
  validation batches every 10, gradient cosine similarity every step
  (CS), and a plain run without measurement, timed side by side.

`experiments.benchmarks.grouping_quality_report` then turns the cached
results into groups for budgets 2, 3, 4 (the optimum picked from every
group's validation loss, each method's groups), test errors, search costs,
the best-partner table, the measurement-frequency ablation, plots and a
markdown report.

Every network and every measurement run is one unit of work cached as a
JSON file under `<out_dir>/cache/<dataset>/seed_<s>/` (written atomically,
so an interrupted run leaves no half unit); rerunning skips what is
cached, so the binary is resumable, and more seeds can be added later.

    python -m experiments.benchmarks.grouping_quality \\
        --out_dir=experiments/benchmarks/results/grouping_quality

Writes in `--out_dir`: `report.md`, CSVs (`results.csv`, `summary.csv`,
`ablation.csv`, `partners.csv`, `networks.csv`, `runs.csv`,
`affinity.csv`), PNG figures, and `cache/` (every unit of work).
"""

import dataclasses
import json
import os
import shlex
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.lib import timing  # noqa: E402
from experiments.lib import training  # noqa: E402
from experiments.benchmarks import (  # noqa: E402
    grouping_quality_report as gq_report)
from experiments.benchmarks import (  # noqa: E402
    grouping_quality_write as gq_write)

# Seven of the nine digit attributes: arithmetic ones and shape ones.
DIGITS_TASKS = ("is_even", "is_prime", "greater_than_4", "has_closed_loop",
                "has_upper_loop", "has_lower_loop", "has_vertical_stroke")
# The paper measures every 10 steps; its ablation frequencies.
TAG_EVERY = 10
FREQUENCIES = (1, 5, 10, 25, 50, 100)
DEFAULT_OUT_DIR = "experiments/benchmarks/results/grouping_quality"

_COMMON = common_flags.define_common_flags(
    ("out_dir", "budgets", "epochs", "seeds"))
_DATASETS = flags.DEFINE_list(
    "datasets", ["planted", "digits"], "Task sets: planted, digits.")
_PLANTED_TASKS = flags.DEFINE_list(
    "planted_tasks", None, "Planted tasks (default: all seven).")
_DIGITS_TASKS = flags.DEFINE_list(
    "digits_tasks", list(DIGITS_TASKS), "Digits tasks.")
_FREQUENCIES = flags.DEFINE_list(
    "frequencies", [str(f) for f in FREQUENCIES],
    "Measure affinity every this many steps, one run each (the ablation).")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Train nothing: write the report from the seeds "
    "whose every unit of work is cached.")


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
        write_steps: Keep `affinity_steps.csv` (for the window ablation).
    """

    name: str
    method: str
    every: int
    held_out: bool = False
    write_steps: bool = False


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


def run_benchmark(task_sets, out_dir, *, seeds, budgets=(2, 3, 4),
                  frequencies=FREQUENCIES, tag_every=TAG_EVERY, train=True,
                  command=None, log=print):
    """Trains what is missing and writes the report after each seed.

    Args:
        task_sets: `TaskSet`s.
        out_dir: The results folder.
        seeds: Training seeds.
        budgets: Numbers of networks to choose groups for.
        frequencies: Measurement frequencies of the ablation.
        tag_every: TAG's frequency (and that of its variants).
        train: False: train nothing, report the seeds fully cached.
        command: The command line, written into the report.
        log: Progress output.

    Returns:
        `{"networks_trained": int, "runs_trained": int, "seeds_reported":
        {dataset: [seeds]}}`.
    """
    runs = variants(frequencies, tag_every)
    counts = {"networks_trained": 0, "runs_trained": 0,
              "seeds_reported": {}}
    done = {}  # dataset -> {seed: (networks, records)}
    for task_set in task_sets:
        done[task_set.name] = {}
        groups = subsets(task_set.tasks)
        for seed in seeds:
            work = SeedWork(task_set, seed, out_dir, train=train, log=log)
            if train:
                log(f"[{task_set.name} seed {seed}] {len(groups)} networks "
                    f"and {len(runs)} measurement runs (cached ones are "
                    "skipped) ...")
            complete = work.complete(groups, runs)
            counts["networks_trained"] += work.networks_trained
            counts["runs_trained"] += work.runs_trained
            if complete is None:
                log(f"[{task_set.name} seed {seed}] incomplete: not "
                    "reported")
                continue
            done[task_set.name][seed] = complete
            gq_write.write_report(
                task_sets, done, out_dir, budgets=budgets,
                frequencies=frequencies, tag_every=tag_every,
                command=command)
    counts["seeds_reported"] = {k: sorted(v) for k, v in done.items()}
    return counts


def load_task_sets(datasets, *, planted_tasks=None, digits_tasks=DIGITS_TASKS,
                   epochs=None):
    """The `TaskSet`s named by `datasets` with per-dataset defaults."""
    task_sets = []
    for name in datasets:
        if name not in ("planted", "digits"):
            raise training.DataError(
                "--datasets must name planted or digits. Received: "
                f"{name!r}")
        tasks = planted_tasks if name == "planted" else digits_tasks
        data = training.load_data(name, tasks=tasks, seed=0)
        if not 2 <= len(data.tasks) <= 10:
            raise training.DataError(
                f"{name}: between 2 and 10 tasks (2^n - 1 networks each). "
                f"Received: {len(data.tasks)} tasks")
        task_sets.append(TaskSet(data, training.default_config(
            name, epochs=epochs)))
    return task_sets


def _ints(values, name):
    try:
        parsed = [int(v) for v in values]
    except ValueError:
        parsed = [0]
    if not parsed or min(parsed) < 1:
        raise training.DataError(f"--{name} must be integers >= 1. "
                                 f"Received: {','.join(values)}")
    return parsed


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        seeds = list(range(_COMMON.seeds.value))
        budgets = _ints(_COMMON.budgets.value or ["2", "3", "4"], "budgets")
        frequencies = _ints(_FREQUENCIES.value, "frequencies")
        task_sets = load_task_sets(
            _DATASETS.value, planted_tasks=_PLANTED_TASKS.value,
            digits_tasks=_DIGITS_TASKS.value, epochs=_COMMON.epochs.value)
    except (training.DataError, ValueError) as error:
        print(f"grouping_quality: error: {error}", file=sys.stderr)
        return 1
    out_dir = _COMMON.out_dir.value or DEFAULT_OUT_DIR
    command = "python -m experiments.benchmarks.grouping_quality " + " ".join(
        shlex.quote(a) for a in sys.argv[1:])
    for task_set in task_sets:
        print(f"{task_set.data.description}; "
              f"{training.describe_config(task_set.config)}", flush=True)
    start = time.perf_counter()
    counts = run_benchmark(
        task_sets, out_dir, seeds=seeds, budgets=budgets,
        frequencies=frequencies, train=not _REPORT_ONLY.value,
        command=command, log=lambda line: print(line, flush=True))
    print(f"Trained {counts['networks_trained']} networks and "
          f"{counts['runs_trained']} measurement runs in "
          f"{time.perf_counter() - start:.0f} s; reported seeds "
          f"{counts['seeds_reported']}. Wrote {out_dir}/report.md")
    return 0


if __name__ == "__main__":
    app.run(main)
