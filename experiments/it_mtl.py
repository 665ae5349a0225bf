"""IT-MTL against the multi-task baselines on MultiDigits (two tasks).

    python -m experiments.it_mtl --seeds=3 --out_dir=runs/it_mtl

STL, MTL, PCGrad, UW-MTL, UW-PCGrad, IT-MTL, IT-UW-PCGrad, IT-MTL's
first-order variant, IT-UW-MTL, first-order IT-UW-PCGrad, MGDA and MGDA-UB
(`--methods`), each for `--seeds` seeds; the work and
the files written in `--out_dir` (runs.csv, resumable; summary.csv;
results.md; candidates/) are `experiments.lib.it_mtl.run`'s.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.lib import it_mtl as it_mtl_lib  # noqa: E402
from experiments.lib import training  # noqa: E402

_COMMON = common_flags.define_common_flags(
    common_flags.DATA + common_flags.TRAINING + ("out_dir", "seeds"))
_METHODS = flags.DEFINE_multi_enum(
    "methods", list(it_mtl_lib.METHOD_NAMES), list(it_mtl_lib.METHOD_NAMES),
    "Methods to compare (repeat the flag for several).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # Its own default dataset: the paper's MultiMNIST comparison.
    dataset = (_COMMON.dataset.value if flags.FLAGS["dataset"].present
               else "multi_digits")
    try:
        data = common_flags.data_from_flags(_COMMON, dataset=dataset)
        training.check_multi_task(data.tasks, "IT-MTL's comparison")
        config = common_flags.config_from_flags(_COMMON, dataset=dataset)
        out_dir = _COMMON.out_dir.value or "runs/it_mtl"
        training.check_out_dir(out_dir)
        print(f"{data.description}; {training.describe_config(config)}")
        summary = it_mtl_lib.run(data, config, out_dir,
                                 seeds=_COMMON.seeds.value,
                                 methods=list(dict.fromkeys(_METHODS.value)))
    except ValueError as error:
        print(f"it_mtl: error: {error}", file=sys.stderr)
        return 1
    print(it_mtl_lib.markdown(summary, data.tasks))
    print(f"Wrote {out_dir}/runs.csv, summary.csv, results.md, candidates/")
    return 0


if __name__ == "__main__":
    app.run(main)
