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


def _benchmark_binaries():
    """Every module under `experiments.benchmarks`, subpackages' entry
    points (`__main__`) and their other binaries included."""
    names = []
    for info in pkgutil.walk_packages(benchmarks.__path__,
                                      benchmarks.__name__ + "."):
        names.append(info.name)
        if info.ispkg:
            names.append(info.name + ".__main__")
    return names


def test_every_binary_imports_in_one_process():
    names = ["tag_keras.cli"] + _modules(experiments) + _benchmark_binaries()
    assert "experiments.it_mtl" in names
    for binary in ("grouping_quality", "calibration", "decision"):
        assert f"experiments.benchmarks.{binary}.__main__" in names
    assert "experiments.benchmarks.decision.proposers" in names
    for name in names:
        importlib.import_module(name)


def test_a_shared_flag_is_one_holder_for_every_binary():
    from absl import flags

    from experiments import it_mtl
    from experiments import pipeline
    from experiments.benchmarks.grouping_quality import (
        __main__ as grouping_quality)

    assert it_mtl._COMMON.seeds is grouping_quality._COMMON.seeds
    assert pipeline._COMMON.epochs is grouping_quality._COMMON.epochs
    assert isinstance(flags.FLAGS["seeds"].value, int)


def test_no_binary_imports_another():
    import ast
    import pathlib

    binaries = {m.split(".")[-1] for m in _modules(experiments)} - {
        "common_flags", "data", "lib", "benchmarks"}
    for path in pathlib.Path(experiments.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in (
                    "experiments",):
                imported = {a.name for a in node.names}
                assert not imported & binaries, (path.name, imported)
