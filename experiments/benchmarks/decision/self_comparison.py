"""Networks compared with themselves (A/A), and with a degraded copy.

    python -m experiments.benchmarks.decision.self_comparison \\
        --out_dir=experiments/benchmarks/results/decision_calibration

Where the true difference is exactly zero, every "split" and every "keep
together: all-task better" is a false answer. Per task set
(`--self_pools`, `SET:SEEDS`), one pool of networks is trained under
seeds 2000, 2001, ...: the all-task network, and TAG's grouping for 2
networks (the measuring run of seed 0). Each replicate draws two
disjoint, ordered seed lists of `MAX_SEEDS` from the pool, arm A and arm
B, and runs the full decision (`tag_keras.train.decide`, default metric
and margin, sequential to 8 seeds) with arm A as "the all-task network"
and arm B as the candidate: the all-task network against itself, and the
TAG grouping against itself.

The known-sign case (`--self_degraded`, `SET:TASK:RATE`): the all-task
network against the same network trained with `RATE` of one task's
training labels flipped, on the same seeds (paired as a real decision
pairs them); its difference over every pool seed is the case's truth,
and each replicate decides on one random ordered list of the pool.

The rates are U-statistics over the pool's seeds: replicates share seeds.
Their standard error is estimated as for subsampled ensembles (Wager,
Hastie & Efron 2014): Var ~ (m^2 / n) zeta_1, zeta_1 the variance over
seeds of the mean outcome of the replicates that use a seed, less its
Monte Carlo part; m the seeds one replicate draws, n the pool. Writes
`self_comparison.csv` (one row per case and answer) and
`self_replicates.csv` (every replicate); resumable (networks cached under
`--out_dir/cache/SET/self/`, the per-network outcomes are kept local).
"""

import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.benchmarks.decision import lib  # noqa: E402
from experiments.lib import training  # noqa: E402

#: Seeds of the self-comparison pools (apart from measuring, decision and
#: truth seeds).
POOL_SEED_BASE = 2000
#: How many seeds each arm of a replicate draws (the decision's looks:
#: 3, 5, 8).
MAX_SEEDS = lib.MAX_SEEDS
#: The budget the TAG arm uses.
TAG_BUDGET = 2

_COMMON = common_flags.define_common_flags(("out_dir",))
_POOLS = flags.DEFINE_list(
    "self_pools", ["digits9:64", "planted3:64", "mnist7:24"],
    "SET:SEEDS: the task sets compared with themselves and each pool's "
    "size (at least 2 x 8 seeds).")
_DEGRADED = flags.DEFINE_list(
    "self_degraded", ["digits9:is_even:0.3"],
    "SET:TASK:RATE: the known-sign cases (the all-task network against "
    "a copy trained with RATE of TASK's training labels flipped).")
_REPLICATES = flags.DEFINE_integer(
    "self_replicates", 400, "Random seed draws per case.", lower_bound=10)


class Arms:
    """Trained networks seen by `tag_keras.train.decide` as one decision:
    "the all-task network" is arm A, the one candidate (`CANDIDATE`, the
    tasks in reverse order) is arm B.

    An arm is `(trainer, groups, serve, seeds)`: its networks are the
    trainer's networks of `groups`, serving each task from
    `groups[serve[task]]`, and the decision's seed i is `seeds[i]`. The
    decision starts at the `first` seeds.
    """

    def __init__(self, arm_a, arm_b, first=3):
        trainer = arm_a[0]
        self.tasks = tuple(trainer.tasks)
        self.splits = trainer.splits
        self.early_stopping = trainer.early_stopping
        self.seeds = list(range(first))
        self.candidate = tuple(reversed(self.tasks))
        self._arms = {self.tasks: arm_a, self.candidate: arm_b}
        self._cache = {}

    def candidates(self):
        """`decide`'s candidates: arm B as one network serving all."""
        return {TAG_BUDGET: [((self.candidate,),
                              {t: 0 for t in self.tasks})]}

    def train(self, groups, seeds=None):
        """Every network is trained already; checks the seeds exist."""
        for seed in seeds or self.seeds:
            for arm in self._arms.values():
                if seed >= len(arm[3]):
                    raise ValueError(f"Seed {seed}: the arms hold "
                                     f"{len(arm[3])} seeds")

    def network(self, group, seed):
        key = (tuple(group), seed)
        if key not in self._cache:
            trainer, groups, serve, seeds = self._arms[tuple(group)]
            real = seeds[seed]
            outcomes = {split: {task: trainer.network(
                groups[serve[task]], real).outcomes[split][task]
                for task in self.tasks} for split in trainer.splits
                if split != "train"}
            self._cache[key] = _Served(outcomes)
        return self._cache[key]


@dataclasses.dataclass(frozen=True)
class _Served:
    outcomes: dict


def replicate(arms, max_seeds=MAX_SEEDS):
    """One decision of arm B against arm A (sequential up to `max_seeds`;
    None: the arms' first seeds only): its answer and the numbers."""
    from tag_keras import train

    decision = train.decide(arms, arms.candidates(), max_seeds=max_seeds)
    (option,) = decision.budgets
    detail = option.answer_detail if option.decision != "undecided" else (
        "not shown either way")
    return {"answer": option.decision, "answer_detail": detail,
            "seeds_used": option.seeds, "difference": option.difference,
            "low": option.low, "high": option.high, "margin": option.margin}


def draw_disjoint(pool, rng):
    """Two disjoint ordered lists of `MAX_SEEDS` seeds from `pool`."""
    order = rng.permutation(len(pool))
    return ([pool[i] for i in order[:MAX_SEEDS]],
            [pool[i] for i in order[MAX_SEEDS:2 * MAX_SEEDS]])


def u_statistic_interval(outcomes, used, pool, draw_size, level=0.95):
    """`(rate, se, low, high)` of a rate over replicates sharing seeds.

    `outcomes[r]` is 0/1, `used[r]` the seeds replicate r drew. The
    variance of the mean over every draw of `draw_size` seeds of a pool
    of n is about (m^2 / n) zeta_1, with zeta_1 the variance over seeds
    of the expected outcome of draws holding that seed; its estimate
    here subtracts the Monte Carlo variance of each seed's mean (Wager,
    Hastie & Efron 2014, for subsampled ensembles), and the Monte Carlo
    variance of the rate itself is added back.
    """
    outcomes = np.asarray(outcomes, float)
    rate = float(outcomes.mean())
    means, noise = [], []
    for seed in pool:
        mine = outcomes[[seed in u for u in used]]
        if len(mine) > 1:
            means.append(mine.mean())
            noise.append(mine.var(ddof=1) / len(mine))
    zeta = max(float(np.var(means, ddof=1) - np.mean(noise)), 0.0) if len(
        means) > 1 else float("nan")
    variance = (draw_size ** 2 / len(pool)) * zeta + outcomes.var(
        ddof=1) / len(outcomes)
    se = float(np.sqrt(variance))
    from scipy import stats

    z = float(stats.norm.ppf(0.5 + level / 2))
    return rate, se, max(rate - z * se, 0.0), min(rate + z * se, 1.0)


def flipped(data, task, rate, seed=0):
    """`data` (GroupTrainer's dict) with `rate` of `task`'s training
    labels flipped (a fixed draw; validation and test untouched)."""
    x, labels = data["train"]
    labels = dict(labels)
    values = np.array(labels[task], copy=True)
    rng = np.random.default_rng(seed)
    flip = rng.random(len(values)) < rate
    known = ~np.isnan(values.astype(float))
    values[flip & known] = 1 - values[flip & known]
    labels[task] = values
    return {**data, "train": (x, labels)}


def tag_grouping(task_set, directory):
    """TAG's grouping for `TAG_BUDGET` networks from the measuring run of
    seed 0, cached as `tag_grouping.json`."""
    from experiments.lib import measure as measure_lib
    from tag_keras import select as select_lib

    path = os.path.join(directory, "tag_grouping.json")
    if os.path.exists(path):
        return lib.read_json(path)
    config = dataclasses.replace(task_set.config, seed=0)
    _, affinity = measure_lib.measure(
        task_set.data, config, os.path.join(directory, "run_0"),
        tensorboard=False)
    grouping = select_lib.select_groups(affinity, TAG_BUDGET)
    value = {"groups": [list(g) for g in grouping.groups],
             "serve": dict(grouping.serve)}
    lib.write_json(path, value)
    return value


def compare_with_itself(name, size, out_dir, replicates, log):
    """Replicate rows of the all-task network and TAG's grouping, each
    against itself, on the task set `name` with a pool of `size`."""
    task_set = lib.load_task_set(name)
    directory = os.path.join(out_dir, "cache", name, "self")
    pool = [POOL_SEED_BASE + i for i in range(size)]
    trainer = training.seeded_trainer(
        task_set.data, task_set.config, pool, directory=directory, log=log)
    tasks = tuple(trainer.tasks)
    tag = tag_grouping(task_set, directory)
    groups = tuple(tuple(g) for g in tag["groups"])
    arms = {"all-task network": ((tasks,), {t: 0 for t in tasks}),
            f"TAG grouping ({TAG_BUDGET} networks)": (groups, tag["serve"])}
    trainer.train([tasks, *groups])
    rows = []
    for case, (case_groups, serve) in arms.items():
        rng = np.random.default_rng(0)
        for r in range(replicates):
            seeds_a, seeds_b = draw_disjoint(pool, rng)
            outcome = replicate(Arms((trainer, case_groups, serve, seeds_a),
                                     (trainer, case_groups, serve, seeds_b)))
            used = outcome["seeds_used"]
            rows.append({"task_set": name, "case": case, "replicate": r,
                         "pool": size, "true_sign": "zero",
                         "seeds_a": " ".join(map(str, seeds_a[:used])),
                         "seeds_b": " ".join(map(str, seeds_b[:used])),
                         **outcome})
        log(f"    {name}, {case} against itself: {replicates} replicates")
    return rows


def compare_with_degraded(spec, size, out_dir, replicates, log):
    """Replicate rows of the all-task network against its copy trained
    with one task's labels partly flipped (`spec` "SET:TASK:RATE"), and
    the difference over the whole pool."""
    from tag_keras import train

    name, task, rate = spec.split(":")
    rate = float(rate)
    task_set = lib.load_task_set(name)
    pool = [POOL_SEED_BASE + i for i in range(size)]
    clean = training.seeded_trainer(
        task_set.data, task_set.config, pool,
        directory=os.path.join(out_dir, "cache", name, "self"), log=log)
    if task not in clean.tasks:
        raise ValueError(f"--self_degraded: {name} has no task {task!r}; "
                         f"its tasks are {list(clean.tasks)}")
    noisy = train.GroupTrainer(
        training.network_builder(task_set.data, task_set.config),
        flipped(training.group_data(task_set.data, task_set.config), task,
                rate),
        seeds=pool, fit_kwargs=dict(clean.fit_kwargs),
        batch_size=clean.batch_size, eval_batch_size=clean.eval_batch_size,
        directory=os.path.join(out_dir, "cache", name,
                               f"degraded_{task}_{rate:g}"),
        log=log, tasks=clean.tasks)
    tasks = tuple(clean.tasks)
    one = ((tasks,), {t: 0 for t in tasks})
    clean.train([tasks])
    noisy.train([tasks])
    whole = replicate(Arms((clean, *one, pool), (noisy, *one, pool),
                           first=size), max_seeds=None)
    case = f"all-task network against {task} {rate:.0%} flipped"
    rows = []
    rng = np.random.default_rng(0)
    for r in range(replicates):
        seeds = [pool[i] for i in rng.permutation(size)[:MAX_SEEDS]]
        outcome = replicate(Arms((clean, *one, seeds), (noisy, *one, seeds)))
        used = outcome["seeds_used"]
        rows.append({"task_set": name, "case": case, "replicate": r,
                     "pool": size, "true_sign": "positive",
                     "pool_difference": whole["difference"],
                     "pool_low": whole["low"], "pool_high": whole["high"],
                     "seeds_a": " ".join(map(str, seeds[:used])),
                     "seeds_b": " ".join(map(str, seeds[:used])),
                     **outcome})
    log(f"    {case}: whole pool {whole['difference']:+.4f} "
        f"[{whole['low']:+.4f}, {whole['high']:+.4f}], {whole['answer']}")
    return rows


def summary(replicates):
    """Per case: the rate of each answer (and each detail) with its
    U-statistic interval, the mean seeds used."""
    rows = []
    for (name, case), part in replicates.groupby(["task_set", "case"],
                                                 sort=False):
        pool = list(range(POOL_SEED_BASE,
                          POOL_SEED_BASE + int(part["pool"].iloc[0])))
        used = [set(map(int, (a + " " + b).split())) for a, b in zip(
            part.seeds_a, part.seeds_b)]
        zero = (part.true_sign == "zero").all()
        draw = 2 * MAX_SEEDS if zero else MAX_SEEDS
        labels = part.answer.where(part.answer != "keep together",
                                   "keep together: " + part.answer_detail)
        for label in ("split", "keep together: all-task better",
                      "keep together: within the margin", "undecided"):
            hits = (labels == label).to_numpy()
            rate, se, low, high = u_statistic_interval(hits, used, pool, draw)
            rows.append({"task_set": name, "case": case,
                         "true_sign": part.true_sign.iloc[0],
                         "answer": label, "rate": rate, "se": se,
                         "low": low, "high": high,
                         "replicates": len(part), "pool": len(pool),
                         "seeds_used": float(part.seeds_used.mean())})
    return pd.DataFrame(rows)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    out_dir = _COMMON.out_dir.value or (
        "experiments/benchmarks/results/decision_calibration")
    try:
        pools = {}
        for item in _POOLS.value:
            name, size = item.split(":")
            if int(size) < 2 * MAX_SEEDS:
                raise ValueError(f"--self_pools: {item}: a pool needs at "
                                 f"least {2 * MAX_SEEDS} seeds")
            lib.load_task_set(name)
            pools[name] = int(size)
    except ValueError as error:
        print(f"self_comparison: error: {error}", file=sys.stderr)
        return 1
    path = os.path.join(out_dir, "self_replicates.csv")
    done = pd.read_csv(path) if os.path.exists(path) else None

    def log(line):
        print(line, flush=True)

    frames = []
    for name, size in pools.items():
        if done is not None and ((done.task_set == name)
                                 & (done.true_sign == "zero")).any():
            frames.append(done[(done.task_set == name)
                               & (done.true_sign == "zero")])
            continue
        frames.append(pd.DataFrame(compare_with_itself(
            name, size, out_dir, _REPLICATES.value, log)))
        _write(out_dir, frames)
    for spec in _DEGRADED.value:
        name = spec.split(":")[0]
        case = [c for c in ([] if done is None else done.case.unique())
                if c.startswith("all-task network against "
                                + spec.split(":")[1])]
        if done is not None and name in set(done.task_set) and case:
            frames.append(done[done.case.isin(case)])
            continue
        frames.append(pd.DataFrame(compare_with_degraded(
            spec, pools.get(name, 20), out_dir, _REPLICATES.value, log)))
        _write(out_dir, frames)
    _write(out_dir, frames)
    return 0


def _write(out_dir, frames):
    replicates = pd.concat(frames, ignore_index=True)
    replicates.to_csv(os.path.join(out_dir, "self_replicates.csv"),
                      index=False)
    table = summary(replicates)
    table.to_csv(os.path.join(out_dir, "self_comparison.csv"), index=False)
    print(table.to_string(index=False), flush=True)


if __name__ == "__main__":
    app.run(main)
