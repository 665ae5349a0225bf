"""TAG ablations from the paper (Fifty et al., 2021, section 5).

    python -m experiments.ablations --ablation=measurement --seeds=3 \
        --out_dir=experiments/benchmarks/results/ablations
    python -m experiments.ablations --ablation=wider --seeds=3 \
        --out_dir=experiments/benchmarks/results/ablations
    python -m experiments.ablations --ablation=pcgrad --seeds=3 \
        --out_dir=experiments/benchmarks/results/ablations
    python -m experiments.ablations --ablation=settings --seeds=3 \
        --out_dir=experiments/benchmarks/results/ablations
    python -m experiments.ablations --ablation=hoa_half --seeds=3 \
        --out_dir=experiments/benchmarks/results/ablations

`measurement`: Pearson r of the affinity measured every 5, 10, 25, 50
steps, and on validation batches, against every step on training batches.
`wider`: the all-task network at 1x-4x the encoder width. `pcgrad`: TAG's
groups trained plainly and with PCGrad. `settings`: groups found at half
the batch size and twice the learning rate, trained under the base
setting. `hoa_half`: HOA with single-task networks of half the width
counting half a network (Standley et al.'s budget). The work and the
files (`<name>.csv`, resumable; `<name>.md`) are
`experiments.lib.ablations`'s.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.lib import ablations  # noqa: E402
from experiments.lib import training  # noqa: E402
from experiments.lib import tables  # noqa: E402

_COMMON = common_flags.define_common_flags(
    common_flags.DATA + common_flags.TRAINING + ("out_dir", "seeds"))
_ABLATION = flags.DEFINE_enum("ablation", "measurement",
                              ["measurement", "wider", "pcgrad", "settings",
                               "hoa_half"],
                              "Which ablation.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    out_dir = _COMMON.out_dir.value or "runs/ablations"
    name = _ABLATION.value
    try:
        training.check_out_dir(out_dir)
        data = common_flags.data_from_flags(_COMMON)
        training.check_multi_task(data.tasks, "A TAG ablation")
        config = common_flags.config_from_flags(_COMMON)
        os.makedirs(out_dir, exist_ok=True)
        print(f"{data.description}; {training.describe_config(config)}")
        run = {"measurement": ablations.measurement,
               "wider": ablations.wider, "pcgrad": ablations.pcgrad,
               "settings": ablations.settings,
               "hoa_half": ablations.hoa_half}[name]
        summary = run(data, config, out_dir, seeds=_COMMON.seeds.value)
    except ValueError as error:
        print(f"ablations: error: {error}", file=sys.stderr)
        return 1
    print(tables.write_markdown(out_dir, name, summary))
    print(f"Wrote {out_dir}/{name}.csv and {name}.md")
    return 0


if __name__ == "__main__":
    app.run(main)
