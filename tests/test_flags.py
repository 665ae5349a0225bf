"""Every binary's flags can live in one process.

absl allows a flag name once per process; pytest imports every binary
into one, so a name two binaries define differently breaks collection.
"""

import importlib
import pkgutil

import experiments
from experiments import benchmarks


def _modules(package):
    return [m.name for m in pkgutil.iter_modules(package.__path__,
                                                  package.__name__ + ".")]


def test_every_binary_imports_in_one_process():
    names = ["tag_keras.cli"] + _modules(experiments) + _modules(benchmarks)
    assert "experiments.it_mtl" in names
    assert "experiments.benchmarks.grouping_quality" in names
    for name in names:
        importlib.import_module(name)


def test_seeds_is_one_flag_for_every_binary():
    from absl import flags

    from experiments import it_mtl
    from experiments.benchmarks import grouping_quality

    assert it_mtl._SEEDS is grouping_quality._SEEDS
    assert isinstance(flags.FLAGS["seeds"].value, int)
