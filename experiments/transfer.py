"""The information-transfer experiments of Wu, Zhang and Ré (ICLR 2020).

    python -m experiments.transfer --experiment=similarity --seeds=5 \
        --out_dir=experiments/benchmarks/results/transfer
    python -m experiments.transfer --experiment=label_noise --seeds=5 \
        --out_dir=experiments/benchmarks/results/transfer
    python -m experiments.transfer --experiment=capacity --seeds=2 \
        --out_dir=experiments/benchmarks/results/transfer

`similarity`: synthetic source/target pairs, covariance similarity
against the benefit of training together and of covariance alignment
(with a rotated pair). `label_noise`: digits with `--noise_fractions` of
`--noisy_task`'s labels flipped; MTL, uncertainty weights and SVD task
weights (`--rank`). `capacity`: digits, the all-task network against one
network per task over `--widths`. The work and the files (`<name>.csv`,
resumable; `<name>.md`) are `experiments.lib.transfer`'s.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.lib import tables  # noqa: E402
from experiments.lib import training  # noqa: E402
from experiments.lib import transfer  # noqa: E402

_COMMON = common_flags.define_common_flags(
    common_flags.DATA + common_flags.TRAINING + ("out_dir", "seeds"))
_EXPERIMENT = flags.DEFINE_enum(
    "experiment", "similarity", ["similarity", "label_noise", "capacity"],
    "Which experiment.")
_KIND = flags.DEFINE_enum("kind", "linear", ["linear", "relu", "logistic"],
                          "similarity: the synthetic tasks' labels.")
_NOISY_TASK = flags.DEFINE_string(
    "noisy_task", "is_even", "label_noise: the task whose labels flip.")
_FRACTIONS = flags.DEFINE_list(
    "noise_fractions", ["0.2", "0.4"], "label_noise: shares flipped.")
_RANK = flags.DEFINE_integer("rank", 3, "label_noise: SVD weights' rank.",
                             lower_bound=1)
_WIDTHS = flags.DEFINE_list("widths", ["2", "4", "8", "16", "32"],
                            "capacity: encoder widths.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    out_dir = _COMMON.out_dir.value or "runs/transfer"
    name = _EXPERIMENT.value
    try:
        training.check_out_dir(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        if name == "similarity":
            summary = transfer.similarity(out_dir, seeds=_COMMON.seeds.value,
                                          kind=_KIND.value)
            name = f"similarity_{_KIND.value}"
        else:
            data = common_flags.data_from_flags(_COMMON)
            config = common_flags.config_from_flags(_COMMON)
            print(f"{data.description}; {training.describe_config(config)}")
            if name == "label_noise":
                if _NOISY_TASK.value not in data.tasks:
                    raise ValueError(
                        f"--noisy_task must be one of {list(data.tasks)}. "
                        f"Received: noisy_task={_NOISY_TASK.value!r}.")
                summary = transfer.label_noise(
                    data, config, out_dir, noisy_task=_NOISY_TASK.value,
                    fractions=[float(f) for f in _FRACTIONS.value],
                    seeds=_COMMON.seeds.value, rank=_RANK.value)
            else:
                summary = transfer.capacity(
                    data, config, out_dir,
                    widths=[int(w) for w in _WIDTHS.value],
                    seeds=_COMMON.seeds.value)
    except ValueError as error:
        print(f"transfer: error: {error}", file=sys.stderr)
        return 1
    print(tables.write_markdown(out_dir, name, summary))
    print(f"Wrote {out_dir}/{name}.csv and {name}.md")
    return 0


if __name__ == "__main__":
    app.run(main)
