"""A small end-to-end run: measure affinity on planted tasks, choose groups.

    python -m experiments.demo --out_dir=runs/demo

The work is `experiments.lib.demo.run` (generated tasks in two known
clusters plus a noise task; one `fit`; groups for 2 and 3 networks).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.lib import demo as demo_lib  # noqa: E402

DEFAULT_EPOCHS = 4

_COMMON = common_flags.define_common_flags(("out_dir", "epochs", "seed"))
_SAMPLES = flags.DEFINE_integer("samples", 2000, "Training samples.",
                                lower_bound=16)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    out_dir = _COMMON.out_dir.value or "runs/demo"
    os.makedirs(out_dir, exist_ok=True)
    demo_lib.run(out_dir, _COMMON.epochs.value or DEFAULT_EPOCHS,
                 _SAMPLES.value, _COMMON.seed.value)
    print(f"\nWrote {out_dir}/affinity/ and {out_dir}/groups.json")


if __name__ == "__main__":
    app.run(main)
