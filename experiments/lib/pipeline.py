"""The whole TAG experiment, with its baselines, as stages.

1. TAG: train all tasks together as a `TaskAffinityModel` measuring the
   lookahead affinity every `config.affinity_every_n_steps` steps (this
   run is also the MTL baseline: measuring never changes training).
2. CS: a second all-task run measuring the cosine similarity of the tasks'
   shared gradients (kernels only, every step, as the original release).
3. Select groups for every budget from each matrix with
   `tag_keras.select_groups` (the matrix the run's `AffinityLogger` wrote:
   the model's `fit_affinity`).
4. Train every group needed, each distinct group once per training seed
   (`seeds`; `tag_keras.train.GroupTrainer`, cached in `networks/`): the
   all-task network (MTL; the TAG run is seed 0's), single tasks (STL),
   the TAG and CS groups, and `rg_samples` random partitions per budget
   (RG, the expected value of random groupings; exact when a budget has
   at most `rg_samples` partitions: then each is trained once). With
   `hoa`, also every pair and the HOA groups (Standley et al.); with
   `optimal` (few tasks only), every subset of tasks, and the best groups
   by measured test error (an oracle: exhaustive search, as the paper's
   "optimal" rows); these two train under the first seed only.
5. Decide, per budget, whether TAG's grouping beats the all-task network
   on validation data (`tag_keras.train.decide`: paired over examples
   and seeds; "split", "keep together" or "undecided" against a margin,
   seeds added to undecided budgets up to `max_seeds`), and write one
   table: per method and budget the mean ± SE over seeds of the total
   test error, the paired difference with MTL, the affinity structure
   and the validated decision with the seeds it used.

Early stopping of every network trained for the decision reads a slice
carved from the training split (`tag_keras.train.data.monitored_split`),
never the validation split that decides; the measuring runs keep the
protocol's early stopping and are not used as decision networks.

Writes in `out_dir`: `affinity/` (AffinityLogger files of the TAG run),
`groups.json` (the selector's output for TAG), `cosine/` (the CS run:
`affinity/`, `groups.json`), `hoa/` (with `hoa`), `optimal/` (with
`optimal`: `performance.csv`, `groups.json`), `history.csv`, `metrics.csv`
and `run.json` of the TAG run, `networks/` (every trained network's
per-example results), `decision.json`, `decision.csv`, `decision.png` and
`networks.csv` (the validated decision, `tag_keras.train`),
`results.csv` (one row per method and budget: per-task and total test
error in %, its SE over seeds, the difference with MTL, seconds spent
finding the groups) and `results.md` (the same table), `pipeline.json`
(timings).
"""

import functools
import itertools
import json
import os
import time

import pandas as pd

from experiments.lib import distribution as distribution_lib
from experiments.lib import hoa as hoa_lib
from experiments.lib import measure as measure_lib
from experiments.lib import results as results_lib
from experiments.lib import training
from tag_keras import InputError
from tag_keras import select as select_lib
from tag_keras.select import choose
from tag_keras.select import readers

# Largest task count for `optimal` (2^n - 1 networks).
MAX_OPTIMAL_TASKS = 10
# `augmentations` value -> table row name.
AUGMENTATIONS = {"uw": "UW", "gradnorm": "GradNorm", "pcgrad": "PCGrad"}
# Row order within a budget, as the paper's tables.
_ORDER = ["CS", "HOA", "TAG", "Optimal"]


def select(affinity, budgets, steps=None, resamples=100):
    """`select_groups` per budget; returns `(document, {budget: seconds})`.

    With `steps` (the run's per-step table), each result also carries the
    affinity structure and stability of `tag_keras.select.stability` from
    `resamples` resamples (their time is not part of the search seconds).
    """
    selection = choose.choose_groups(affinity, budgets, steps=steps,
                                     resamples=resamples)
    return selection.document, selection.seconds


def best_by_test_error(engine, groups, budgets, out_dir, seed=None):
    """The exact best groups per budget from measured test errors.

    Every task's test error in every one of `groups` (trained at `seed`,
    default the engine's first) goes into `tag_keras.select_groups_from_performance`, which then finds, for
    each budget, the groups with the lowest mean served test error. With
    every subset measured this is the exhaustive optimum. Writes
    `performance.csv` and `groups.json` in `out_dir` (on the chief only,
    under a multi-worker `engine.distribution`).

    Returns:
        `(document, {budget: training seconds of every group + that
        budget's selection seconds})`.
    """
    seed = engine.seeds[0] if seed is None else seed
    performance = pd.DataFrame([
        {"group": "|".join(g), "task": t,
         "value": engine.network(g, seed).mean("test", t, "error")}
        for g in groups for t in g])
    document, select_seconds = hoa_lib.select_and_write(
        engine.distribution, performance, budgets, out_dir,
        value="test_error")
    train_seconds = training.training_seconds(engine, groups, seed)
    return document, {b: train_seconds + s for b, s in select_seconds.items()}


def train_augmented(data, config, augmentation, *, gradnorm_alpha=1.5,
                    distribution=None):
    """Trains all tasks with a `tag_keras.mtl` method; a `TrainResult`.

    `distribution` is the `tf.distribute.Strategy` to train under (None for
    none), not to be confused with the `tag_keras.mtl` training method.
    """
    import tag_keras

    result, _ = training.train_network(
        data, config, model_cls=tag_keras.TaskAffinityModel,
        distribution=distribution, affinity_every_n_steps=0,
        training_method=measure_lib.make_training_method(
            augmentation, gradnorm_alpha=gradnorm_alpha))
    return result


def check_options(tasks, *, optimal=False, augmentations=()):
    """Raises `InputError` for options these tasks cannot run."""
    training.check_multi_task(tasks, "The pipeline")
    if optimal and len(tasks) > MAX_OPTIMAL_TASKS:
        raise InputError(
            f"--optimal trains 2^n - 1 networks; it allows at most "
            f"{MAX_OPTIMAL_TASKS} tasks. Received: {len(tasks)} tasks "
            "(choose fewer with --tasks)")
    unknown = [a for a in augmentations if a not in AUGMENTATIONS]
    if unknown:
        raise InputError(
            f"Unknown augmentations {unknown}; choose from "
            f"{list(AUGMENTATIONS)}")


def run_pipeline(data, config, out_dir, *, budgets=(2, 3, 4), rg_samples=2,
                 cosine=True, hoa=False, optimal=False, augmentations=(),
                 gradnorm_alpha=1.5, stability_resamples=100,
                 distribution=None, log=print, num_seeds=3, max_seeds=None,
                 margin=None, executor=None):
    """Runs the experiment; writes `out_dir`; returns the results frame.

    Args:
        data: A `MultiTaskData`.
        config: A `training.TrainConfig` for every network.
        out_dir: Output directory (see the module docstring).
        budgets: Numbers of networks; budgets above the task count are
            dropped.
        rg_samples: Random partitions per budget (0: no RG rows).
        cosine: Run the CS baseline.
        hoa: Run HOA (trains every pair).
        optimal: Train every subset of tasks and add the best groups by
            test error (an oracle; at most `MAX_OPTIMAL_TASKS` tasks).
        augmentations: Keys of `AUGMENTATIONS`: all-task baselines trained
            with that `tag_keras.mtl` method (one row each).
        gradnorm_alpha: GradNorm's alpha.
        stability_resamples: Resamples of the TAG run's measured steps for
            each budget's affinity structure (stable / unclear)
            (`tag_keras.select.stability`); 0 for none.
        distribution: A `tf.distribute.Strategy` every network is trained
            under (`distribution.make_distribution`); None for none. Under
            several workers every worker runs this function and only the
            chief writes `out_dir`.
        log: Progress output, one line per stage and per network.
        executor: Where the seeded networks train
            (`tag_keras.train.executors`; None: in this process).
        num_seeds: Training seeds `config.seed`, `config.seed + 1`, ...:
            every network of MTL, STL, RG, TAG and CS is trained under
            each, and the table gives the mean ± SE over them.
        max_seeds: The decision adds seeds to TAG's undecided budgets (and
            MTL) up to this many (None: `num_seeds`).
        margin: The decision's margin in summed validation error (None:
            2% of the all-task network's).

    Returns:
        The `pandas.DataFrame` written as `results.csv`.
    """
    try:
        check_options(data.tasks, optimal=optimal, augmentations=augmentations)
    except InputError as error:
        raise ValueError(str(error)) from None
    if num_seeds < 2:
        raise ValueError("`num_seeds` must be at least 2: the decision "
                         "cannot estimate the seed variance from one. "
                         f"Received: num_seeds={num_seeds}")
    with distribution_lib.output_dir(out_dir, distribution) as writable:
        run = _Run(data, config, writable, distribution, log,
                   [b for b in budgets if b <= len(data.tasks)],
                   stages=5 + bool(cosine) + bool(hoa) + bool(optimal)
                   + bool(augmentations), num_seeds=num_seeds,
                   executor=executor)
        run.stability_resamples = stability_resamples
        run.measure("TAG", "lookahead", writable)
        if cosine:
            run.measure("CS", "cosine", os.path.join(writable, "cosine"))
        random_groupings = run.train_planned(rg_samples, hoa)
        if hoa:
            run.hoa()
        if optimal:
            run.optimal()
        augmented = run.augmented(augmentations, gradnorm_alpha)
        decision = run.decide(random_groupings, max_seeds, margin)
        results = _evaluate(run, augmented, random_groupings, decision)
        return run.write(results)


def _steps_table(out_dir):
    """The run's `affinity/affinity_steps.csv`, or None where it is absent
    (a worker that is not the chief writes no file)."""
    path = os.path.join(out_dir, "affinity", "affinity_steps.csv")
    return (readers.read_table(path, readers.NAME_COLUMNS[
        "affinity_steps.csv"]) if os.path.exists(path) else None)


class _Run:
    """One pipeline run: its trainers, the chosen groups, the stage count."""

    def __init__(self, data, config, out_dir, distribution, log, budgets,
                 stages, num_seeds=1, executor=None):
        self.data, self.config, self.out_dir = data, config, out_dir
        self.distribution, self.log, self.budgets = distribution, log, budgets
        self.start = time.perf_counter()
        os.makedirs(out_dir, exist_ok=True)
        self.seeds = [config.seed + i for i in range(num_seeds)]
        self.networks = training.seeded_trainer(
            data, config, self.seeds, directory=out_dir,
            distribution=distribution, log=log).use(
                executor, functools.partial(training.group_data, data,
                                            config))
        self.chosen, self.searches = {}, {}
        self._stages, self._stage = stages, 0
        self.stability_resamples = 0

    def stage(self, text):
        self._stage += 1
        self.log(f"[stage {self._stage}/{self._stages}] {text}")

    def measure(self, method, affinity_method, out_dir):
        """An all-task run measuring affinity; selects groups from it."""
        if affinity_method == "cosine":
            self.stage("CS: training all tasks together, measuring gradient "
                       "cosine similarity every step ...")
            options = {"every_n_steps": 1, "write_steps": False}
        else:
            self.stage(f"TAG: training all {len(self.data.tasks)} tasks "
                       "together, measuring lookahead affinity every "
                       f"{self.config.affinity_every_n_steps} steps ...")
            options = {}
        result, affinity, model = measure_lib.measure(
            self.data, self.config, out_dir, affinity_method=affinity_method,
            tensorboard=False, distribution=self.distribution,
            return_model=True, **options)
        steps = None
        # The TAG run early-stopped on the validation split, so it is not
        # one of the decision's all-task networks.
        if method == "TAG":
            if self.stability_resamples:
                steps = _steps_table(out_dir)
        del model
        self.log(f"    {result.epochs} epochs in {result.seconds:.1f} s")
        document, seconds = select(affinity, self.budgets, steps,
                                   self.stability_resamples)
        select_lib.write_groups(os.path.join(out_dir, "groups.json"),
                                document)
        self.searches[method] = {b: result.seconds + s
                                 for b, s in seconds.items()}
        self.chosen[method] = select_lib.GroupsDocument.from_dict(document)

    def train_planned(self, rg_samples, hoa):
        """Trains MTL, STL, the chosen groups and RG under every seed (and
        HOA's pairs under the first)."""
        tasks = self.data.tasks
        random_groupings = {
            b: training.random_partitions(tasks, b, rg_samples,
                                          seed=self.config.seed + b)
            for b in self.budgets if rg_samples}
        planned = [tuple(tasks)] + [(t,) for t in tasks]
        for document in self.chosen.values():
            planned += document.groups()
        planned += [g for ps in random_groupings.values() for p in ps
                    for g in p]
        self.stage(f"training the groups under seeds {self.seeds}: MTL, "
                   f"STL, {', '.join(self.chosen)}"
                   + (", RG" if rg_samples else "")
                   + " (each distinct group once per seed) ...")
        self.networks.train(planned)
        if hoa:  # HOA and the oracle train under the first seed only.
            self.networks.train(training.pairs(tasks), seeds=self.seeds[:1])
        return random_groupings

    def hoa(self):
        self.stage("HOA: selecting from the singles' and pairs' validation "
                   "losses, training its groups ...")
        document = hoa_lib.run(self.networks,
                               os.path.join(self.out_dir, "hoa"),
                               self.budgets, seed=self.seeds[0])
        self.searches["HOA"] = document.pop("search_seconds")
        self.chosen["HOA"] = select_lib.GroupsDocument.from_dict(document)
        self.networks.train(self.chosen["HOA"].groups(),
                            seeds=self.seeds[:1])

    def optimal(self):
        tasks = self.data.tasks
        subsets = [g for size in range(1, len(tasks) + 1)
                   for g in itertools.combinations(tasks, size)]
        self.stage(f"optimal: training all {len(subsets)} subsets of tasks "
                   "...")
        self.networks.train(subsets, seeds=self.seeds[:1])
        document, self.searches["Optimal"] = best_by_test_error(
            self.networks, subsets, self.budgets,
            os.path.join(self.out_dir, "optimal"), seed=self.seeds[0])
        self.chosen["Optimal"] = select_lib.GroupsDocument.from_dict(document)

    def augmented(self, augmentations, gradnorm_alpha):
        """All-task networks trained with `tag_keras.mtl` methods."""
        if not augmentations:
            return {}
        self.stage("all-task baselines with "
                   f"{', '.join(AUGMENTATIONS[a] for a in augmentations)} ...")
        results = {}
        for i, augmentation in enumerate(augmentations, start=1):
            self.log(f"[{i}/{len(augmentations)}] training all tasks with "
                     f"{AUGMENTATIONS[augmentation]} ...")
            results[augmentation] = train_augmented(
                self.data, self.config, augmentation,
                gradnorm_alpha=gradnorm_alpha, distribution=self.distribution)
            self.log(f"    {results[augmentation].epochs} epochs in "
                     f"{results[augmentation].seconds:.1f} s")
        return results

    def decide(self, random_groupings, max_seeds=None, margin=None):
        """TAG's validated decision per budget (`tag_keras.train`)."""
        from tag_keras import train

        self.stage("deciding on validation data: each budget's TAG "
                   "grouping against the all-task network ...")
        candidates = {r.num_groups: [r.chosen]
                      for r in self.chosen["TAG"].results}
        random = {b: (p, len(p) == training.partition_count(
            len(self.data.tasks), b)) for b, p in random_groupings.items()}
        decision = train.decide(self.networks, candidates, random=random,
                                max_seeds=max_seeds, margin=margin,
                                log=self.log)
        if distribution_lib.is_chief(self.distribution):
            train.write_decision(self.out_dir, decision, self.networks,
                                 networks_name="networks.csv")
        self.log(train.format_table(decision))
        return decision

    def write(self, results):
        """Writes the tables and `pipeline.json`; returns the frame."""
        frame = results_lib.write_results(
            results, self.data.tasks, self.out_dir,
            title=f"Test error (%) on {self.data.description}; "
            f"{training.describe_config(self.config)}")
        seconds = time.perf_counter() - self.start
        with open(os.path.join(self.out_dir, "pipeline.json"), "w") as handle:
            json.dump({
                "dataset": self.data.name, "tasks": list(self.data.tasks),
                "budgets": self.budgets,
                "seeds": self.seeds,
                # Every seed's networks, the TAG run's included.
                "networks_trained": len(self.networks.stored()),
                "wall_seconds": seconds, "search_seconds": self.searches,
                "distribution": distribution_lib.distribution_info(
                    self.distribution),
            }, handle, indent=2)
        self.stage(f"done in {seconds:.0f} s")
        return frame


def decision_text(option):
    """A budget's answer for the results table, with its seeds."""
    if option.decision == "keep together":
        return f"keep together: {option.answer_detail} ({option.seeds} seeds)"
    if option.decision == "undecided":
        more = ("more seeds alone cannot decide"
                if option.seeds_needed is None
                else f"~{option.seeds_needed} seeds would decide")
        return f"undecided ({option.seeds} seeds; {more})"
    return f"{option.decision} ({option.seeds} seeds)"


def _per_seed(run, groups, serve):
    """`{seed: {task: test error}}` of the tasks served by `groups`."""
    return {s: {t: run.networks.network(groups[i], s).mean(
                    "test", t, "error")
                for t, i in serve.items()}
            for s in run.seeds}


def _evaluate(run, augmented, random_groupings, decision):
    """One `MethodResult` per method and budget of `run` (a `_Run`)."""
    run.stage("evaluating ...")
    tasks = run.data.tasks
    single = {run.seeds[0]: None}
    results = [
        results_lib.MethodResult.over_seeds(
            "MTL", 1, _per_seed(run, (tuple(tasks),), {t: 0 for t in tasks}),
            groups=(tuple(tasks),)),
        results_lib.MethodResult.over_seeds(
            "STL", len(tasks), _per_seed(
                run, [(t,) for t in tasks],
                {t: i for i, t in enumerate(tasks)}),
            groups=tuple((t,) for t in tasks)),
    ]
    results += [results_lib.MethodResult.over_seeds(
        AUGMENTATIONS[a], 1, {s: dict(r.test_error) for s in single},
        groups=(tuple(tasks),)) for a, r in augmented.items()]
    decided = {o.num_groups: decision_text(o) for o in decision.budgets}
    for budget in run.budgets:
        if budget in random_groupings:
            partitions = random_groupings[budget]
            per_partition = [_per_seed(run, p, training.serve_partition(p))
                             for p in partitions]
            results.append(results_lib.MethodResult.over_seeds(
                "RG", budget, {s: results_lib.mean_errors(
                    [e[s] for e in per_partition]) for s in run.seeds},
                samples=len(partitions)))
        for method in sorted(run.chosen, key=_ORDER.index):
            result = next((r for r in run.chosen[method].results
                           if r.num_groups == budget), None)
            if result is None:
                continue
            groups, serve = result.chosen
            if method in ("TAG", "CS"):
                per_seed = _per_seed(run, groups, serve)
            else:  # HOA and the oracle: the first seed only.
                per_seed = {run.seeds[0]: training.served_errors(
                    run.networks, groups, serve, run.seeds[0])}
            results.append(results_lib.MethodResult.over_seeds(
                method, budget, per_seed, groups=groups,
                search_seconds=run.searches[method].get(budget),
                affinity_structure=result.affinity_structure,
                decision=decided.get(budget, "") if method == "TAG"
                else ""))
    return results
