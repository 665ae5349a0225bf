"""The whole TAG experiment in one command, with its baselines.

1. TAG: train all tasks together as a `TaskAffinityModel` measuring the
   lookahead affinity every `--affinity_every_n_steps` steps (this run is
   also the MTL baseline: measuring never changes training).
2. CS: a second all-task run measuring the cosine similarity of the tasks'
   shared gradients (kernels only, every step, as the original release).
3. Select groups for every budget (`--budgets`, default 2,3,4) from
   each matrix with `tag_keras.select_groups`.
4. Train every group needed, each distinct group once: single tasks (STL),
   the TAG and CS groups, and `--rg_samples` random partitions per budget
   (RG, the expected value of random groupings); with `--hoa`, also every
   pair and the HOA groups (Standley et al.); with `--optimal` (few tasks
   only), every subset of tasks, and the best groups by measured test error
   (an oracle: exhaustive search, as the paper's "optimal" rows).
5. Evaluate each task with the network that serves it and write one table.

    python -m experiments.pipeline --dataset=digits --out_dir=runs/pipeline

Writes in `--out_dir`: `affinity/` (AffinityLogger files of the TAG run),
`groups.json` (the selector's output for TAG), `cosine/` (the CS run:
`affinity/`, `groups.json`), `hoa/` (with `--hoa`), `optimal/` (with
`--optimal`: `performance.csv`, `groups.json`), `history.csv`,
`metrics.csv` and `run.json` of the TAG run, `results.csv` (one row per
method and budget: per-task and total test error in %, seconds spent
finding the groups) and `results.md` (the same table), `pipeline.json`
(timings). `--distribution` trains every network under a `tf.distribute`
strategy (the batch size is global; with several workers only the chief
writes).
"""

import itertools
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import pandas as pd  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments import distribution as distribution_lib  # noqa: E402
from experiments import hoa as hoa_lib  # noqa: E402
from experiments import results as results_lib  # noqa: E402
from experiments import run_affinity  # noqa: E402
from experiments import train_groups as train_groups_lib  # noqa: E402
from experiments import training  # noqa: E402

# Flags of the imported binaries that the pipeline does not use.
_IGNORED_FLAGS = ("affinity_method", "training_method", "groups", "method",
                  "hoa_value")
# Largest task count for --optimal (2^n - 1 networks).
MAX_OPTIMAL_TASKS = 10
# --augmentations value -> table row name.
AUGMENTATIONS = {"uw": "UW", "gradnorm": "GradNorm", "pcgrad": "PCGrad"}

_COMMON = common_flags.define_common_flags()
_RG_SAMPLES = flags.DEFINE_integer(
    "rg_samples", 2, "Random partitions trained per budget for the RG "
    "baseline (their mean is reported).", lower_bound=0)
_COSINE = flags.DEFINE_bool(
    "cosine", True, "Run the cosine-similarity (CS) baseline.")
_HOA = flags.DEFINE_bool(
    "hoa", False, "Run HOA too: trains every pair of tasks (n(n-1)/2 more "
    "networks).")
_OPTIMAL = flags.DEFINE_bool(
    "optimal", False, "Also train every subset of tasks (2^n - 1 networks; "
    f"at most {MAX_OPTIMAL_TASKS} tasks) and report the best groups by "
    "test error for each budget.")
_AUGMENTATIONS = flags.DEFINE_multi_enum(
    "augmentations", [], list(AUGMENTATIONS),
    "All-task baselines trained with a tag_keras.mtl augmentation: uw "
    "(uncertainty weights), gradnorm, pcgrad; repeat the flag for several.")


# Row order within a budget, as the paper's tables.
_ORDER = ["CS", "HOA", "TAG", "Optimal"]


def select(affinity, budgets):
    """`select_groups` per budget; returns `(document, {budget: seconds})`."""
    import tag_keras

    groupings, seconds = [], {}
    for budget in budgets:
        start = time.perf_counter()
        groupings.append(tag_keras.select_groups(affinity, budget))
        seconds[budget] = time.perf_counter() - start
    document = hoa_lib.groups_document(
        list(affinity.index), groupings, mode="affinity")
    return document, seconds


def best_by_test_error(trainer, groups, budgets, out_dir):
    """The exact best groups per budget from measured test errors.

    Every task's test error in every one of `groups` (all trained) goes
    into `tag_keras.select_groups_from_performance`, which then finds, for
    each budget, the groups with the lowest mean served test error. With
    every subset measured this is the exhaustive optimum. Writes
    `performance.csv` and `groups.json` in `out_dir` (on the chief only,
    under a multi-worker `trainer.distribution`).

    Returns:
        `(document, {budget: training seconds of every group + that
        budget's selection seconds})`.
    """
    performance = pd.DataFrame([
        {"group": "|".join(g), "task": t,
         "value": trainer.result(g).test_error[t]}
        for g in groups for t in g])
    groupings, select_seconds = hoa_lib.select(performance, budgets)
    document = hoa_lib.groups_document(trainer.data.tasks, groupings,
                                       mode="performance", value="test_error")
    with distribution_lib.output_dir(out_dir, trainer.distribution) as writable:
        os.makedirs(writable, exist_ok=True)
        performance.to_csv(os.path.join(writable, "performance.csv"),
                           index=False)
        _write_json(os.path.join(writable, "groups.json"), document)
    train_seconds = trainer.seconds(groups)
    return document, {b: train_seconds + s for b, s in select_seconds.items()}


def _write_json(path, document):
    with open(path, "w") as handle:
        json.dump(document, handle, indent=2)


def train_augmented(data, config, augmentation, *, gradnorm_alpha=1.5,
                    distribution=None):
    """Trains all tasks with a `tag_keras.mtl` strategy; a `TrainResult`.

    `distribution` is the `tf.distribute.Strategy` to train under (None for
    none), not to be confused with the `tag_keras.mtl` training strategy.
    """
    import tag_keras

    result, _ = training.train_network(
        data, config, model_cls=tag_keras.TaskAffinityModel,
        distribution=distribution, affinity_every_n_steps=0,
        strategy=run_affinity.make_strategy(augmentation,
                                            gradnorm_alpha=gradnorm_alpha))
    return result


def run_pipeline(data, config, out_dir, *, budgets=(2, 3, 4), rg_samples=2,
                 cosine=True, hoa=False, optimal=False, augmentations=(),
                 gradnorm_alpha=1.5, distribution=None, log=print):
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
            with that `tag_keras.mtl` strategy (one row each).
        gradnorm_alpha: GradNorm's alpha.
        distribution: A `tf.distribute.Strategy` every network is trained
            under (`distribution.make_distribution`); None for none. Under
            several workers every worker runs this function and only the
            chief writes `out_dir`.
        log: Progress output, one line per stage and per network.

    Returns:
        The `pandas.DataFrame` written as `results.csv`.
    """
    with distribution_lib.output_dir(out_dir, distribution) as writable:
        return _run_pipeline(
            data, config, writable, budgets=budgets, rg_samples=rg_samples,
            cosine=cosine, hoa=hoa, optimal=optimal,
            augmentations=augmentations, gradnorm_alpha=gradnorm_alpha,
            distribution=distribution, log=log)


def _run_pipeline(data, config, out_dir, *, budgets, rg_samples, cosine,
                  hoa, optimal, augmentations, gradnorm_alpha, distribution,
                  log):
    start = time.perf_counter()
    tasks = data.tasks
    if optimal and len(tasks) > MAX_OPTIMAL_TASKS:
        raise ValueError(
            f"`optimal` trains 2^n - 1 networks; it allows at most "
            f"{MAX_OPTIMAL_TASKS} tasks. Received: {len(tasks)} tasks")
    os.makedirs(out_dir, exist_ok=True)
    budgets = [b for b in budgets if b <= len(tasks)]
    stages = 4 + bool(cosine) + bool(hoa) + bool(optimal) + bool(
        augmentations)
    stage = iter(range(1, stages + 1))
    trainer = training.GroupTrainer(data, config, distribution=distribution,
                                    log=log)

    log(f"[stage {next(stage)}/{stages}] TAG: training all "
        f"{len(tasks)} tasks together, measuring lookahead affinity every "
        f"{config.affinity_every_n_steps} steps ...")
    tag_run, tag_affinity = run_affinity.measure(
        data, config, out_dir, tensorboard=False, distribution=distribution)
    trainer.add(tag_run)
    log(f"    {tag_run.epochs} epochs in {tag_run.seconds:.1f} s")
    tag_document, tag_select = select(tag_affinity, budgets)
    _write_json(os.path.join(out_dir, "groups.json"), tag_document)
    searches = {"TAG": {b: tag_run.seconds + s
                        for b, s in tag_select.items()}}
    chosen = {"TAG": tag_document}

    if cosine:
        log(f"[stage {next(stage)}/{stages}] CS: training all tasks "
            "together, measuring gradient cosine similarity every step ...")
        cs_dir = os.path.join(out_dir, "cosine")
        cs_run, cs_affinity = run_affinity.measure(
            data, config, cs_dir, affinity_method="cosine", every_n_steps=1,
            tensorboard=False, write_steps=False, distribution=distribution)
        log(f"    {cs_run.epochs} epochs in {cs_run.seconds:.1f} s")
        cs_document, cs_select = select(cs_affinity, budgets)
        _write_json(os.path.join(cs_dir, "groups.json"), cs_document)
        searches["CS"] = {b: cs_run.seconds + s for b, s in cs_select.items()}
        chosen["CS"] = cs_document

    random_groupings = {
        b: training.random_partitions(tasks, b, rg_samples,
                                      seed=config.seed + b)
        for b in budgets if rg_samples
    }
    planned = [(t,) for t in tasks]
    for document in chosen.values():
        planned += [tuple(g) for e in document["results"]
                    for g in e["groups"]]
    planned += [g for ps in random_groupings.values() for p in ps for g in p]
    if hoa:
        planned += training.pairs(tasks)
    log(f"[stage {next(stage)}/{stages}] training the groups: STL, "
        f"{', '.join(chosen)}" + (", RG" if rg_samples else "")
        + (", HOA pairs" if hoa else "") + " (each distinct group once) ...")
    trainer.train_all(planned)

    if hoa:
        log(f"[stage {next(stage)}/{stages}] HOA: selecting from the "
            "singles' and pairs' validation losses, training its groups ...")
        hoa_document = hoa_lib.run(trainer, os.path.join(out_dir, "hoa"),
                                   budgets)
        searches["HOA"] = hoa_document.pop("search_seconds")
        chosen["HOA"] = hoa_document
        trainer.train_all([tuple(g) for e in hoa_document["results"]
                           for g in e["groups"]])

    if optimal:
        subsets = [g for size in range(1, len(tasks) + 1)
                   for g in itertools.combinations(tasks, size)]
        log(f"[stage {next(stage)}/{stages}] optimal: training all "
            f"{len(subsets)} subsets of tasks ...")
        trainer.train_all(subsets)
        chosen["Optimal"], searches["Optimal"] = best_by_test_error(
            trainer, subsets, budgets, os.path.join(out_dir, "optimal"))

    augmented = {}
    if augmentations:
        log(f"[stage {next(stage)}/{stages}] all-task baselines with "
            f"{', '.join(AUGMENTATIONS[a] for a in augmentations)} ...")
        for i, augmentation in enumerate(augmentations, start=1):
            log(f"[{i}/{len(augmentations)}] training all tasks with "
                f"{AUGMENTATIONS[augmentation]} ...")
            augmented[augmentation] = train_augmented(
                data, config, augmentation, gradnorm_alpha=gradnorm_alpha,
                distribution=distribution)
            log(f"    {augmented[augmentation].epochs} epochs in "
                f"{augmented[augmentation].seconds:.1f} s")

    log(f"[stage {next(stage)}/{stages}] evaluating ...")
    results = [
        results_lib.MethodResult("MTL", 1, dict(tag_run.test_error),
                                 groups=(tuple(tasks),)),
        results_lib.MethodResult(
            "STL", len(tasks),
            trainer.served_errors([(t,) for t in tasks],
                                  {t: i for i, t in enumerate(tasks)}),
            groups=tuple((t,) for t in tasks)),
    ]
    results += [
        results_lib.MethodResult(AUGMENTATIONS[a], 1, dict(r.test_error),
                                 groups=(tuple(tasks),))
        for a, r in augmented.items()
    ]
    for budget in budgets:
        if budget in random_groupings:
            partitions = random_groupings[budget]
            results.append(results_lib.MethodResult(
                "RG", budget,
                results_lib.mean_errors([
                    trainer.served_errors(p, training.serve_partition(p))
                    for p in partitions]),
                samples=len(partitions)))
        for method in sorted(chosen, key=_ORDER.index):
            document = chosen[method]
            results += train_groups_lib.train_groups(
                trainer, document, budgets=[budget], method=method,
                search_seconds=searches[method], log=lambda line: None)

    frame = results_lib.write_results(
        results, tasks, out_dir,
        title=f"Test error (%) on {data.description}; "
        f"{training.describe_config(config)}")
    seconds = time.perf_counter() - start
    _write_json(os.path.join(out_dir, "pipeline.json"), {
        "dataset": data.name, "tasks": list(tasks), "budgets": budgets,
        "networks_trained": len(trainer), "wall_seconds": seconds,
        "search_seconds": searches,
        "distribution": distribution_lib.distribution_info(distribution),
    })
    log(f"[stage {next(stage)}/{stages}] done: {len(trainer)} networks in "
        f"{seconds:.0f} s")
    return frame


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    common_flags.reject_unused_flags(
        "pipeline", _IGNORED_FLAGS,
        "flags of the binaries it runs; the pipeline measures lookahead "
        "affinity and CS, trains plain all-task networks, and HOA selects "
        "by validation loss")
    try:
        distribution = common_flags.distribution_from_flags(_COMMON)
        data = common_flags.data_from_flags(_COMMON)
        budgets = _COMMON.budget_list()
        if _OPTIMAL.value and len(data.tasks) > MAX_OPTIMAL_TASKS:
            raise training.DataError(
                f"--optimal trains 2^n - 1 networks; it allows at most "
                f"{MAX_OPTIMAL_TASKS} tasks. Received: {len(data.tasks)} "
                "tasks (choose fewer with --tasks)")
    except training.DataError as error:
        print(f"pipeline: error: {error}", file=sys.stderr)
        return 1
    config = common_flags.config_from_flags(_COMMON)
    out_dir = _COMMON.out_dir_or("runs/pipeline")
    print(f"{data.description}; {training.describe_config(config)}"
          f"{distribution_lib.describe_distribution(distribution)}", flush=True)
    start = time.perf_counter()
    frame = run_pipeline(
        data, config, out_dir, budgets=budgets, rg_samples=_RG_SAMPLES.value,
        cosine=_COSINE.value, hoa=_HOA.value, optimal=_OPTIMAL.value,
        augmentations=_AUGMENTATIONS.value,
        gradnorm_alpha=_COMMON.gradnorm_alpha.value,
        distribution=distribution,
        log=lambda line: print(line, flush=True))
    print()
    print(results_lib.markdown_table(frame, data.tasks))
    print(f"Wall time {time.perf_counter() - start:.0f} s.", end=" ")
    if distribution_lib.is_chief(distribution):
        print(f"Wrote {out_dir}/results.csv, results.md, groups.json, "
              "affinity/")
    else:
        print("Not the chief: wrote no file.")
    return 0


if __name__ == "__main__":
    app.run(main)
