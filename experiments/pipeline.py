"""The whole TAG experiment in one command, with its baselines.

    python -m experiments.pipeline --dataset=digits --out_dir=runs/pipeline

TAG and CS measuring runs, groups for every budget (`--budgets`, default
2,3,4), STL, random groupings (`--rg_samples`), optionally HOA (`--hoa`),
the exhaustive oracle (`--optimal`) and all-task networks trained with
`tag_keras.mtl` methods (`--augmentations`); every network trained once,
then one table. The stages and the files written in `--out_dir` are in
`experiments.lib.pipeline`'s docstring. `--distribution` trains every
network under a `tf.distribute` strategy (the batch size is global; with
several workers only the chief writes).
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.lib import distribution as distribution_lib  # noqa: E402
from experiments.lib import pipeline as pipeline_lib  # noqa: E402
from experiments.lib import results as results_lib  # noqa: E402
from experiments.lib import training  # noqa: E402
from tag_keras import InputError

_COMMON = common_flags.define_common_flags(
    common_flags.DATA + common_flags.TRAINING + common_flags.EXECUTOR + (
        "out_dir", "affinity_every_n_steps", "budgets", "gradnorm_alpha",
        "distribution"))
_RG_SAMPLES = flags.DEFINE_integer(
    "rg_samples", 2, "Random partitions trained per budget for the RG "
    "baseline (their mean is reported; a budget with at most this many "
    "partitions trains each once: the exact expectation).", lower_bound=0)
_COSINE = flags.DEFINE_bool(
    "cosine", True, "Run the cosine-similarity (CS) baseline.")
_HOA = flags.DEFINE_bool(
    "hoa", False, "Run HOA too: trains every pair of tasks (n(n-1)/2 more "
    "networks).")
_OPTIMAL = flags.DEFINE_bool(
    "optimal", False, "Also train every subset of tasks (2^n - 1 networks; "
    f"at most {pipeline_lib.MAX_OPTIMAL_TASKS} tasks) and report the best "
    "groups by test error for each budget.")
_STABILITY = flags.DEFINE_integer(
    "stability_resamples", 100, "Resamples of the TAG run's measured steps "
    "for each budget's affinity structure, stable / unclear (0: "
    "none; at least 10).", lower_bound=0)
_NUM_SEEDS = flags.DEFINE_integer(
    "num_seeds", 3, "Training seeds (--seed, --seed + 1, ...): every MTL, "
    "STL, RG, TAG and CS network is trained under each; the table gives "
    "the mean ± SE over them and the validated decision pairs over them.",
    lower_bound=1)
_MAX_SEEDS = flags.DEFINE_integer(
    "max_seeds", 8, "The validated decision adds seeds (at looks 3, 5, 8 "
    "from 3 seeds) to the budgets still undecided, up to this many; "
    "--num_seeds for fixed seeds.", lower_bound=2)
_MARGIN = flags.DEFINE_float(
    "margin", None, "The decision's margin: the smallest gain in summed "
    "validation error (a fraction: 0.01 is one point) worth more "
    "networks (default: 2% of the all-task network's).")
_AUGMENTATIONS = flags.DEFINE_multi_enum(
    "augmentations", [], list(pipeline_lib.AUGMENTATIONS),
    "All-task baselines trained with a tag_keras.mtl method: uw "
    "(uncertainty weights), gradnorm, pcgrad; repeat the flag for several.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        distribution = common_flags.distribution_from_flags(_COMMON)
        data = common_flags.data_from_flags(_COMMON)
        budgets = common_flags.budget_list(_COMMON)
        pipeline_lib.check_options(data.tasks, optimal=_OPTIMAL.value,
                                   augmentations=_AUGMENTATIONS.value)
        out_dir = _COMMON.out_dir.value or "runs/pipeline"
        training.check_out_dir(out_dir)
        if _NUM_SEEDS.value < 2:
            raise InputError(
                "--num_seeds must be at least 2: the decision cannot "
                f"estimate the seed variance from one. Received: "
                f"{_NUM_SEEDS.value}")
        if _MAX_SEEDS.value < _NUM_SEEDS.value:
            raise InputError(
                "--max_seeds must be at least --num_seeds. Received: "
                f"max_seeds={_MAX_SEEDS.value}, num_seeds={_NUM_SEEDS.value}")
        if _MARGIN.value is not None and not _MARGIN.value > 0:
            raise InputError(f"--margin must be positive. Received: "
                             f"margin={_MARGIN.value}")
        if 0 < _STABILITY.value < 10:
            raise InputError(
                "--stability_resamples must be 0 or at least 10. Received: "
                f"{_STABILITY.value}")
        if distribution is not None and (_COMMON.workers.value is not None
                                         or _COMMON.ray_address.value):
            raise InputError(
                "--distribution spreads one network over devices; --workers"
                " and --ray_address spread the networks over workers: give "
                "one of them. Received: distribution="
                f"{_COMMON.distribution.value}")
        executor = common_flags.executor_from_flags(_COMMON, out_dir)
    except InputError as error:
        print(f"pipeline: error: {error}", file=sys.stderr)
        return 1
    try:
        return _run(data, budgets, out_dir, distribution, executor)
    finally:
        if executor is not None:
            executor.stop()


def _run(data, budgets, out_dir, distribution, executor):
    config = common_flags.config_from_flags(_COMMON)
    print(f"{data.description}; {training.describe_config(config)}"
          f"{distribution_lib.describe_distribution(distribution)}", flush=True)
    start = time.perf_counter()
    frame = pipeline_lib.run_pipeline(
        data, config, out_dir, budgets=budgets, rg_samples=_RG_SAMPLES.value,
        cosine=_COSINE.value, hoa=_HOA.value, optimal=_OPTIMAL.value,
        augmentations=_AUGMENTATIONS.value,
        gradnorm_alpha=_COMMON.gradnorm_alpha.value,
        stability_resamples=_STABILITY.value, distribution=distribution,
        log=lambda line: print(line, flush=True), num_seeds=_NUM_SEEDS.value,
        max_seeds=_MAX_SEEDS.value, margin=_MARGIN.value,
        executor=executor)
    print()
    print(results_lib.markdown_table(frame, data.tasks))
    print(f"Wall time {time.perf_counter() - start:.0f} s.", end=" ")
    if distribution_lib.is_chief(distribution):
        print(f"Wrote {out_dir}/results.csv, results.md, decision.json, "
              "groups.json, affinity/")
    else:
        print("Not the chief: wrote no file.")
    return 0


if __name__ == "__main__":
    app.run(main)
