"""The console scripts' entry points (`tag-select`, `tag-train`), and
the CPU kernels every command pins before TensorFlow loads.

Kept outside the `tag_keras` package, so that nothing heavy is imported
before Ctrl-C is handled: Ctrl-C while a command is still importing ends
it with one line and exit status 130, as it does later (`tag_keras._cli`).
Standard library only.

Kernels. TensorFlow's CPU matrix products and convolutions come from
oneDNN, which picks its kernels at run time by the CPU's instruction set,
and the numbers differ in round-off with the kernels (and, with AVX-512
kernels, with the number of threads); training amplifies round-off, so
the same code and seeds printed other tables on other machines. The
commands (`tag-train`, the experiment binaries, the tests, Ray workers)
cap oneDNN at AVX2 kernels, which every x86-64 server of the last decade
has: measured on an AVX-512 machine, it makes the numbers independent of
1 or 2 threads and equal to an AVX2-only CPU's, at no cost beyond noise
(`experiments/benchmarks/results/reproducibility*.md`). A value the user
set is kept. Library users set `ONEDNN_MAX_CPU_ISA=AVX2` themselves.
"""

import importlib
import os
import sys

#: Environment variables the commands set, unless already set.
PINNED_KERNELS = {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin_kernels():
    """Sets `PINNED_KERNELS` (call before TensorFlow runs an operation)."""
    for name, value in PINNED_KERNELS.items():
        os.environ.setdefault(name, value)


def _run(program, module):
    pin_kernels()
    try:
        cli = importlib.import_module(module)
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        sys.exit(130)
    cli.run()


def tag_select():
    """`tag-select`."""
    _run("tag-select", "tag_keras.select.cli")


def tag_train():
    """`tag-train`."""
    _run("tag-train", "tag_keras.train.cli")
