"""`tag-select`: task groups for one or more budgets, as a table and JSON.

    tag-select --affinity=runs/celeba/affinity.csv --num_groups=2,3,4 \\
        [--output=groups.json] [--normalize] [--allow_singletons] \\
        [--max_group_size=N]
    tag-select --performance=losses.csv --num_groups=2,3   # HOA-style

Also `python -m tag_keras.cli`. Bad input ends with a one-line error on
stderr and exit status 1.
"""

import os
import pathlib
import sys

from absl import app
from absl import flags
import pandas as pd

from tag_keras.select import document as document_lib
from tag_keras.select import grouping
from tag_keras.select import performance as performance_lib

_AFFINITY = flags.DEFINE_string(
    "affinity", None, "CSV of the affinity matrix: first column = source "
    "task (e.g. `source`), then one column per target task.")
_PERFORMANCE = flags.DEFINE_string(
    "performance", None, "HOA-style selection instead: CSV with columns "
    "group,task,value (group = task names joined by `|`; value = a measured "
    "loss or error, minimised).")
_NUM_GROUPS = flags.DEFINE_list(
    "num_groups", ["2", "3", "4"], "Budgets: largest numbers of groups.")
_OUTPUT = flags.DEFINE_string("output", None, "Optional JSON output path.")
_NORMALIZE = flags.DEFINE_bool(
    "normalize", False, "Divide affinities by the target's self-affinity.")
_ALLOW_SINGLETONS = flags.DEFINE_bool(
    "allow_singletons", False, "Allow one-task groups, scored by "
    "self-affinity (use with affinity measured on held-out data).")
_MAX_GROUP_SIZE = flags.DEFINE_integer(
    "max_group_size", None, "Optional largest group size.")


class InputError(ValueError):
    """Bad input, reported as one line."""


def load_affinity(path):
    """Reads an affinity CSV written by AffinityLogger (or alike)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise InputError(f"Affinity file not found. Received: affinity={path}")
    try:
        frame = pd.read_csv(path, index_col=0)
    except (ValueError, OSError) as error:  # Empty or unparsable CSV.
        message = str(error).splitlines()[0] if str(error) else type(error)
        raise InputError(f"Cannot read {path} as CSV: {message}") from None
    if len(frame.index) < 2:
        raise InputError(
            "The affinity matrix needs at least two tasks. Received: "
            f"tasks={[str(t) for t in frame.index]}")
    return frame


def parse_budgets(values):
    """`["2", "3"]` -> `[2, 3]`; each budget an integer >= 1."""
    budgets = []
    for value in values:
        try:
            budget = int(value)
        except ValueError:
            budget = None
        if budget is None or budget < 1:
            raise InputError(
                "Each budget must be an integer >= 1. Received: "
                f"num_groups={','.join(values)}")
        budgets.append(budget)
    if not budgets:
        raise InputError("Give at least one budget. Received: num_groups=")
    return budgets


def select(tasks_source, budgets, *, performance=False, **options):
    """Returns `(tasks, [Grouping per budget])`; raises on bad input."""
    results = []
    for budget in budgets:
        if performance:
            results.append(performance_lib.select_groups_from_performance(
                tasks_source, budget, **options))
        else:
            results.append(grouping.select_groups(
                tasks_source, budget, **options))
    tasks = list(results[0].serve)
    return tasks, results


def format_result(result, tasks):
    """A readable table for one budget."""
    kind = "loss" if result.minimize else "score"
    if result.optimal:
        status = "proven optimal"
    else:
        relative = result.gap / max(abs(result.upper_bound), 1e-300)
        status = (f"NOT proven optimal: upper bound {result.upper_bound:.6g}, "
                  f"gap {result.gap:.3g} ({relative:.1%})")
    lines = [f"Budget {result.num_groups}: {len(result.groups)} group(s), "
             f"mean {kind} {result.score:.6g}, {status} [{result.method}]"]
    if result.num_groups >= len(tasks):
        lines.append(f"  (a budget of {len(tasks)} already gives every task "
                     "its best group; more groups cannot help)")
    elif len(result.groups) < result.num_groups and result.optimal:
        lines.append(f"  (only {len(result.groups)} groups are useful; "
                     "more cannot help)")
    for index, group in enumerate(result.groups):
        members = " ".join(
            f"*{t}" if result.serve[t] == index else t for t in group)
        lines.append(f"  group {index}: {members}")
    lines.append("  (* = served by this group)")
    width = max(len(t) for t in tasks)
    lines.append(f"  {'task':<{width}}  group  {kind}")
    for task in tasks:
        lines.append(f"  {task:<{width}}  {result.serve[task]:>5}  "
                     f"{result.task_scores[task]:.6g}")
    return "\n".join(lines)


def check_output(path):
    """Fails before any work if `--output` cannot be written.

    A missing parent folder is created; a directory, or a folder that
    cannot be written, is an error naming the path.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise InputError(f"--output is a directory; give a file path such as "
                         f"{path / 'groups.json'}. Received: output={path}")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"Cannot create the folder of --output: "
                         f"{error.strerror}. Received: output={path}") from None
    if not os.access(parent, os.W_OK) or (
            path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"--output is not writable. Received: output={path}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        if (_AFFINITY.value is None) == (_PERFORMANCE.value is None):
            raise InputError("Give exactly one of --affinity and "
                             "--performance.")
        budgets = parse_budgets(_NUM_GROUPS.value)
        if _OUTPUT.value:
            check_output(_OUTPUT.value)
        if _PERFORMANCE.value is not None:
            path = pathlib.Path(_PERFORMANCE.value)
            if not path.is_file():
                raise InputError(
                    f"Performance file not found. Received: performance={path}")
            source = performance_lib.read_performance(path)
            options = {"max_group_size": _MAX_GROUP_SIZE.value}
            settings = {"mode": "performance"}
        else:
            source = load_affinity(_AFFINITY.value)
            options = {"normalize": _NORMALIZE.value,
                       "allow_singletons": _ALLOW_SINGLETONS.value,
                       "max_group_size": _MAX_GROUP_SIZE.value}
            settings = {"mode": "affinity", **options}
        tasks, results = select(
            source, budgets, performance=_PERFORMANCE.value is not None,
            **options)
    except (ValueError, TypeError) as error:
        print(f"tag-select: error: {error}", file=sys.stderr)
        return 1
    print("\n\n".join(format_result(r, tasks) for r in results))
    if _OUTPUT.value:
        document_lib.write_groups(
            _OUTPUT.value,
            document_lib.groups_document(tasks, results, **settings))
        print(f"\nWrote {_OUTPUT.value}")
    return 0


def run():
    """Console-script entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
