"""Trains all tasks together and measures inter-task affinity.

    python -m experiments.run_affinity --dataset=digits --out_dir=runs/aff
    tag-select --affinity=runs/aff/affinity/affinity.csv --num_groups=2,3,4

The work is `experiments.lib.measure.measure` (its docstring lists the
files written in `--out_dir`). `--affinity_method`: lookahead, first_order
or cosine; `--training_method`: mtl, uw, gradnorm, pcgrad. `--distribution`
trains under a `tf.distribute` strategy (the batch size is global; with
several workers only the chief writes).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.lib import distribution as distribution_lib  # noqa: E402
from experiments.lib import measure as measure_lib  # noqa: E402
from experiments.lib import training  # noqa: E402
from tag_keras import InputError

_COMMON = common_flags.define_common_flags(
    common_flags.DATA + common_flags.TRAINING + (
        "out_dir", "affinity_every_n_steps", "gradnorm_alpha",
        "distribution"))
_AFFINITY_METHOD = flags.DEFINE_enum(
    "affinity_method", "lookahead", measure_lib.AFFINITY_METHODS,
    "How affinity is measured.")
_TRAINING_METHOD = flags.DEFINE_enum(
    "training_method", "mtl", measure_lib.TRAINING_METHODS,
    "mtl: equal loss weights; uw: uncertainty weights; gradnorm; pcgrad.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        distribution = common_flags.distribution_from_flags(_COMMON)
        data = common_flags.data_from_flags(_COMMON)
        out_dir = _COMMON.out_dir.value or "runs/affinity"
        training.check_out_dir(out_dir)
        training.check_multi_task(data.tasks)
    except InputError as error:
        print(f"run_affinity: error: {error}", file=sys.stderr)
        return 1
    config = common_flags.config_from_flags(_COMMON)
    print(f"{data.description}; {training.describe_config(config)}"
          f"{distribution_lib.describe_distribution(distribution)}")
    print(f"Training {len(data.tasks)} tasks together "
          f"({_TRAINING_METHOD.value}), measuring {_AFFINITY_METHOD.value} "
          f"affinity every {config.affinity_every_n_steps} steps ...")
    result, affinity = measure_lib.measure(
        data, config, out_dir, affinity_method=_AFFINITY_METHOD.value,
        training_method=_TRAINING_METHOD.value,
        gradnorm_alpha=_COMMON.gradnorm_alpha.value,
        distribution=distribution)
    print(f"{result.epochs} epochs (best {result.best_epoch}) in "
          f"{result.seconds:.1f} s; total test error "
          f"{100 * sum(result.test_error.values()):.2f}%")
    print(affinity.round(4).to_string())
    if distribution_lib.is_chief(distribution):
        print(f"Wrote {out_dir}/affinity/, tensorboard/, history.csv, "
              "metrics.csv, run.json")
    return 0


if __name__ == "__main__":
    app.run(main)
