"""Trains the task groups a selector chose and reports their test error.

    tag-select --affinity=runs/aff/affinity/affinity.csv --output=groups.json
    python -m experiments.train_groups --dataset=digits \\
        --groups=groups.json --out_dir=runs/groups

Reads the groups document (`tag-select --output`, `experiments.hoa`, the
pipeline); the work is `experiments.lib.groups.train_groups`. Writes in
`--out_dir`: `results.csv` (method, num_groups, samples, groups, one column
per task with its test error in %, total, search_seconds) and `results.md`
(the same as a markdown table). `--distribution` trains every network
under a `tf.distribute` strategy (the batch size is global; with several
workers each reads `--groups` and only the chief writes).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.lib import distribution as distribution_lib  # noqa: E402
from experiments.lib import groups as groups_lib  # noqa: E402
from experiments.lib import results as results_lib  # noqa: E402
from experiments.lib import training  # noqa: E402
from tag_keras import InputError
from tag_keras import select as select_lib  # noqa: E402

_COMMON = common_flags.define_common_flags(
    common_flags.DATA + common_flags.TRAINING + (
        "out_dir", "budgets", "distribution"))
_GROUPS = flags.DEFINE_string(
    "groups", None, "The selector's JSON (tag-select --output=...); "
    "required.")
_METHOD = flags.DEFINE_string(
    "method", "TAG", "Name of the selection method in the table.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not _GROUPS.value:
        raise app.UsageError("--groups is required (the selector's JSON).")
    try:
        distribution = common_flags.distribution_from_flags(_COMMON)
        document = select_lib.read_document(_GROUPS.value)
        budgets = common_flags.budget_list(_COMMON, default=None)
        out_dir = _COMMON.out_dir.value or "runs/groups"
        training.check_out_dir(out_dir)
        data = training.load_data(
            _COMMON.dataset.value,
            # The document's own task list, if it has one (else every
            # task of the dataset).
            tasks=_COMMON.tasks.value or document.document.get("tasks"),
            data_dir=_COMMON.data_dir.value, seed=_COMMON.seed.value,
            download=_COMMON.download.value)
        groups_lib.check_groups(document, data.tasks, budgets)
        config = common_flags.config_from_flags(_COMMON)
        print(f"{data.description}; {training.describe_config(config)}"
              f"{distribution_lib.describe_distribution(distribution)}")
        engine = training.seeded_trainer(data, config,
                                         distribution=distribution)
        results = groups_lib.train_groups(engine, document, budgets=budgets,
                                          method=_METHOD.value)
    except InputError as error:
        print(f"train_groups: error: {error}", file=sys.stderr)
        return 1
    with distribution_lib.output_dir(out_dir, distribution) as writable:
        os.makedirs(writable, exist_ok=True)
        frame = results_lib.write_results(
            results, data.tasks, writable,
            title=f"Test error (%) on {data.description}")
    print(results_lib.markdown_table(frame, data.tasks))
    if distribution_lib.is_chief(distribution):
        print(f"Wrote {out_dir}/results.csv and {out_dir}/results.md")
    return 0


if __name__ == "__main__":
    app.run(main)
