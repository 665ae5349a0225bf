"""Optimisation trajectories: single- vs multi-task, per target task.

    python -m experiments.trajectories --seeds=5 \
        --out_dir=experiments/benchmarks/results/trajectories

For each `--targets` task: its single-task network, the all-task network,
`--aux_sets` networks of the target with `--aux_size` random other tasks,
and the all-task network with PCGrad and with GradNorm, each measured
every epoch by `tag_keras.callbacks.TrajectoryLogger`, for `--seeds`
seeds; then the generalization gap at matched loss, the factor
differences and the conflict correlations. The work and the files are
`experiments.lib.trajectories.run`'s (resumable).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.lib import trajectories  # noqa: E402
from experiments.lib import training  # noqa: E402

_COMMON = common_flags.define_common_flags(
    common_flags.DATA + common_flags.TRAINING + ("out_dir", "seeds"))
_TARGETS = flags.DEFINE_list(
    "targets", None, "Target tasks (default: the first three tasks).")
_AUX_SETS = flags.DEFINE_integer(
    "aux_sets", 2, "Random auxiliary-task sets per target.", lower_bound=0)
_AUX_SIZE = flags.DEFINE_integer(
    "aux_size", 3, "Auxiliary tasks per set.", lower_bound=1)
_MAX_SAMPLES = flags.DEFINE_integer(
    "max_samples", 512, "Examples per task the measures read (2048 in the "
    "paper).", lower_bound=1)
_SHARPNESS_STEPS = flags.DEFINE_integer(
    "sharpness_steps", 10, "Ascent steps of the sharpness.", lower_bound=1)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        data = common_flags.data_from_flags(_COMMON)
        training.check_multi_task(data.tasks, "The trajectory comparison")
        config = common_flags.config_from_flags(_COMMON)
        if not flags.FLAGS["epochs"].present:
            config = config.__class__(**{**config.__dict__, "epochs": 24,
                                         "lr_halving_epochs": 8})
        out_dir = _COMMON.out_dir.value or "runs/trajectories"
        training.check_out_dir(out_dir)
        targets = _TARGETS.value or list(data.tasks[:3])
        print(f"{data.description}; {training.describe_config(config)}")
        trajectories.run(
            data, config, out_dir, targets=targets, seeds=_COMMON.seeds.value,
            aux_sets=_AUX_SETS.value, aux_size=_AUX_SIZE.value,
            max_samples=_MAX_SAMPLES.value,
            sharpness_steps=_SHARPNESS_STEPS.value)
    except ValueError as error:
        print(f"trajectories: error: {error}", file=sys.stderr)
        return 1
    with open(os.path.join(out_dir, "results.md")) as handle:
        print(handle.read())
    print(f"Wrote {out_dir}/results.md, summaries.csv, gaps.csv, "
          "windows.csv, factors.csv, correlations.csv, curves.png, runs/")
    return 0


if __name__ == "__main__":
    app.run(main)
