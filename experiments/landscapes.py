"""Loss landscapes of the all-task network (transference paper, §4.2).

    python -m experiments.landscapes --out_dir=runs/landscapes

Trains the all-task network on `--dataset` (default `multi_digits`, the
paper's MultiMNIST stand-in) and writes, on one training batch, at the
ends of `--at_epochs` and after training: each task's loss along the
shared update of each task's gradient and of their sum (to three steps),
and on two random filter-normalised directions (`lines_*.csv/png`,
`surface_*.csv/png`; `experiments.lib.landscapes`).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.lib import landscapes  # noqa: E402
from experiments.lib import training  # noqa: E402

_COMMON = common_flags.define_common_flags(
    common_flags.DATA + common_flags.TRAINING + ("out_dir",))
_AT = flags.DEFINE_list("at_epochs", ["1"], "Epoch ends (1-based) to draw "
                        "the landscapes at, besides the end of training.")
_POINTS = flags.DEFINE_integer("points", 21, "Grid points per axis of the "
                               "surface.", lower_bound=2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    dataset = (_COMMON.dataset.value if flags.FLAGS["dataset"].present
               else "multi_digits")
    try:
        data = common_flags.data_from_flags(_COMMON, dataset=dataset)
        training.check_multi_task(data.tasks, "A landscape of transfer")
        config = common_flags.config_from_flags(_COMMON, dataset=dataset)
        out_dir = _COMMON.out_dir.value or "runs/landscapes"
        training.check_out_dir(out_dir)
        at = [int(e) for e in _AT.value]
        print(f"{data.description}; {training.describe_config(config)}")
        landscapes.run(data, config, out_dir, at_epochs=at,
                       points=_POINTS.value)
    except ValueError as error:
        print(f"landscapes: error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {out_dir}/lines_*.csv/png and surface_*.csv/png")
    return 0


if __name__ == "__main__":
    app.run(main)
