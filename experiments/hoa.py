"""HOA (Standley et al.): train every single task and pair, then select.

    python -m experiments.hoa --dataset=digits --out_dir=runs/hoa
    python -m experiments.train_groups --dataset=digits \\
        --groups=runs/hoa/groups.json --method=HOA --out_dir=runs/hoa_groups

The work is `experiments.lib.hoa.run` (its docstring lists the files
written in `--out_dir`: performance.csv, groups.json, hoa.json).
`--distribution` trains every network under a `tf.distribute` strategy
(the batch size is global; with several workers only the chief writes).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.lib import distribution as distribution_lib  # noqa: E402
from experiments.lib import hoa as hoa_lib  # noqa: E402
from experiments.lib import training  # noqa: E402
from tag_keras import InputError  # noqa: E402
from tag_keras import select as select_lib  # noqa: E402

_COMMON = common_flags.define_common_flags(
    common_flags.DATA + common_flags.TRAINING + (
        "out_dir", "budgets", "distribution"))
_HOA_VALUE = flags.DEFINE_enum(
    "hoa_value", "validation_loss", hoa_lib.HOA_VALUES,
    "The performance HOA minimises: each task's validation loss (as "
    "HOA) or its test error.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        distribution = common_flags.distribution_from_flags(_COMMON)
        data = common_flags.data_from_flags(_COMMON)
        training.check_multi_task(data.tasks, "HOA")
        budgets = common_flags.budget_list(_COMMON)
        out_dir = _COMMON.out_dir.value or "runs/hoa"
        training.check_out_dir(out_dir)
    except InputError as error:
        print(f"hoa: error: {error}", file=sys.stderr)
        return 1
    config = common_flags.config_from_flags(_COMMON)
    n = len(data.tasks)
    print(f"{data.description}; {training.describe_config(config)}"
          f"{distribution_lib.describe_distribution(distribution)}")
    print(f"HOA: training {n} single-task and {n * (n - 1) // 2} pair "
          "networks ...")
    engine = training.seeded_trainer(data, config, distribution=distribution)
    document = hoa_lib.run(engine, out_dir, budgets, value=_HOA_VALUE.value)
    for result in select_lib.GroupsDocument.from_dict(document).results:
        print(f"Budget {result.num_groups}: "
              + " | ".join("+".join(g) for g in result.chosen.groups)
              + f" (mean {_HOA_VALUE.value} {result.score:.4f})")
    if distribution_lib.is_chief(distribution):
        print(f"Wrote {out_dir}/performance.csv, groups.json, hoa.json")
    return 0


if __name__ == "__main__":
    app.run(main)
