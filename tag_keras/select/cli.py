"""`tag-select`: task groups for one or more budgets, as a table and JSON.

    tag-select --affinity=runs/celeba/affinity.csv --num_groups=2,3,4 \\
        [--output=groups.json] [--normalize] [--allow_singletons] \\
        [--max_group_size=N] [--plot=affinity.png] [--stability=200] \\
        [--time_limit=60] [--progress]
    tag-select --performance=losses.csv --num_groups=2,3   # HOA-style
    tag-select --group_affinity=runs/celeba/group_affinity.csv \
        --num_groups=2,3                       # from measured group sources

Also `python -m tag_keras.cli`. Bad input ends with a one-line error on
stderr and exit status 1.
"""

import math
import os
import pathlib
import sys

from absl import flags

from tag_keras import _cli
from tag_keras import _errors
from tag_keras.select import choose
from tag_keras.select import document as document_lib
from tag_keras.select import group_affinity as group_lib
from tag_keras.select import performance as performance_lib
from tag_keras.select import readers

_AFFINITY = flags.DEFINE_string(
    "affinity",
    None,
    "CSV of the affinity matrix: first column = source "
    "task (e.g. `source`), then one column per target task.",
)
_PERFORMANCE = flags.DEFINE_string(
    "performance",
    None,
    "HOA-style selection instead: CSV with columns "
    "group,task,value (group = task names joined by `|`; value = a measured "
    "loss or error, minimised).",
)
_GROUP_AFFINITY = flags.DEFINE_string(
    "group_affinity",
    None,
    "Selection from group affinities instead: "
    "group_affinity.csv (columns sources,target,affinity; sources = task "
    "names joined by `|`), as AffinityLogger writes it for a model with "
    "affinity_sources; a task's score in G is Z(G minus it -> it), "
    "estimated by a least-squares surrogate where not measured.",
)
_NUM_GROUPS = flags.DEFINE_list(
    "num_groups", ["2", "3", "4"], "Budgets: largest numbers of groups."
)
_OUTPUT = flags.DEFINE_string("output", None, "Optional JSON output path.")
_STABILITY = flags.DEFINE_integer(
    "stability",
    0,
    "Resamples of the measured steps for each budget's "
    "stability and affinity structure, stable / unclear (0: off; 200 is a "
    "good start). Needs the per-step values (--steps). It describes the "
    "affinities, not whether to split: tag-train decides that.",
    lower_bound=0,
)
_STEPS = flags.DEFINE_string(
    "steps",
    None,
    "The per-step affinity CSV for --stability (default: "
    "affinity_steps.csv beside --affinity).",
)
_SEED = flags.DEFINE_integer(
    "stability_seed", 0, "Seed of the --stability resampling."
)
_PLOT = flags.DEFINE_string(
    "plot",
    None,
    "Optional PNG path: the affinity matrix beside its view "
    "centred per target column (with --affinity).",
)
_NORMALIZE = flags.DEFINE_bool(
    "normalize", False, "Divide affinities by the target's self-affinity."
)
_ALLOW_SINGLETONS = flags.DEFINE_bool(
    "allow_singletons",
    False,
    "Allow one-task groups, scored by "
    "self-affinity (use with affinity measured on held-out data).",
)
_MAX_GROUP_SIZE = flags.DEFINE_integer(
    "max_group_size", None, "Optional largest group size."
)
_TIME_LIMIT = flags.DEFINE_float(
    "time_limit",
    None,
    "Seconds each budget's search may use beyond the "
    "exact dynamic program (17+ tasks; HOA and group affinity from 15): "
    "the best grouping and the proven bound when it runs out (default: no "
    "limit).",
)
_TOP = flags.DEFINE_integer(
    "top",
    1,
    "With --affinity: also write each budget's `top` best "
    "distinct groupings as `candidates` in --output, for tag-train to "
    "train and judge on validation data (exact, up to 16 tasks).",
    lower_bound=1,
)
_PROGRESS = flags.DEFINE_bool(
    "progress", False, "Print the search's progress (score, bound) to stderr."
)


InputError = _errors.InputError


def load_affinity(path):
    """Reads an affinity CSV written by AffinityLogger (or alike)."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise InputError(
            f"--affinity is a directory; give the CSV in it, e.g. "
            f"{path / 'affinity.csv'}. Received: affinity={path}"
        )
    if not path.is_file():
        raise InputError(f"Affinity file not found. Received: affinity={path}")
    frame = readers.read_affinity(path)
    if len(frame.columns) == len(frame.index) - 1 and (
        frame.index.name not in (None, "source")
    ):
        raise InputError(
            f"{path} has no `source` column: its first column must hold the "
            "source task names (AffinityLogger writes `source`), then one "
            f"column per target. Received: columns="
            f"{[frame.index.name, *map(str, frame.columns)]}"
        )
    if len(frame.index) < 2:
        raise InputError(
            "The affinity matrix needs at least two tasks. Received: "
            f"tasks={[str(t) for t in frame.index]}"
        )
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
                f"num_groups={','.join(values)}"
            )
        budgets.append(budget)
    if not budgets:
        raise InputError("Give at least one budget. Received: num_groups=")
    return sorted(set(budgets))


def load_steps(path, affinity_path):
    """The per-step table for --stability; raises `InputError`."""
    path = pathlib.Path(
        path or pathlib.Path(affinity_path).parent / "affinity_steps.csv"
    )
    if not path.is_file():
        raise InputError(
            "--stability needs the per-step values (affinity_steps.csv, "
            "written by AffinityLogger with write_steps=True); pass --steps. "
            f"Received: steps={path}"
        )
    return readers.read_table(path, readers.NAME_COLUMNS["affinity_steps.csv"])


def format_result(result, tasks):
    """A readable table for one budget."""
    kind = "loss" if result.minimize else "score"
    if result.optimal:
        status = "proven optimal"
    else:
        relative = result.gap / max(abs(result.upper_bound), 1e-300)
        status = (
            f"NOT proven optimal: upper bound {result.upper_bound:.6g}, "
            f"gap {result.gap:.3g} ({relative:.1%})"
        )
    lines = [
        (
            f"Budget {result.num_groups}: {len(result.groups)} group(s), "
            f"mean {kind} {result.score:.6g}, {status} [{result.method}]"
        )
    ]
    if len(result.groups) < result.num_groups and result.optimal:
        lines.append(
            f"  (a budget of {len(result.groups)} already reaches "
            f"this score: budget {result.num_groups} uses only "
            f"{len(result.groups)} groups; more cannot help)"
        )
    elif result.num_groups > len(tasks):
        lines.append(
            f"  (a budget of {len(tasks)} already gives every task "
            f"its best group; budget {result.num_groups} cannot "
            "help more)"
        )
    for index, group in enumerate(result.groups):
        members = " ".join(
            f"*{t}" if result.serve[t] == index else t for t in group
        )
        lines.append(f"  group {index}: {members}")
    lines.append("  (* = served by this group)")
    if result.estimated:
        lines.append(
            f"  (scores of {', '.join(result.estimated)} are the "
            "surrogate's estimates: their group was never measured "
            "as a source)"
        )
    width = max(len(t) for t in tasks)
    lines.append(f"  {'task':<{width}}  group  {kind}")
    for task in tasks:
        lines.append(
            f"  {task:<{width}}  {result.serve[task]:>5}  "
            f"{result.task_scores[task]:.6g}"
        )
    return "\n".join(lines)


def check_output(path, flag="output"):
    """Fails before any work if `--output` (or `--plot`) cannot be written.

    A missing parent folder is created; a directory, or a folder that
    cannot be written, is an error naming the path.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise InputError(
            f"--{flag} is a directory; give a file path. "
            f"Received: {flag}={path}"
        )
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(
            f"Cannot create the folder of --{flag}: "
            f"{error.strerror}. Received: {flag}={path}"
        ) from None
    if not os.access(parent, os.W_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise InputError(f"--{flag} is not writable. Received: {flag}={path}")


def describe_surrogate(fit):
    """Lines on the group-affinity surrogate's fit, per target."""
    lines = [
        (
            "Surrogate for unmeasured group sources (least squares on "
            "membership, per target):"
        )
    ]
    for row in fit.itertuples():
        r2 = (
            "exact fit, no residual to judge"
            if math.isnan(row.r2)
            else f"R^2 {row.r2:.3f}"
        )
        lines.append(
            f"  {row.target}: {row.points} measured sources, "
            f"{row.parameters} parameters"
            f"{' with intercept' if row.intercept else ''}, {r2}"
        )
    return "\n".join(lines)


def _group_affinity_inputs(budgets):
    path = pathlib.Path(_GROUP_AFFINITY.value)
    if not path.is_file():
        raise InputError(
            f"Group affinity file not found. Received: group_affinity={path}"
        )
    frame = group_lib.read_group_affinity(path)
    options = {
        "allow_singletons": _ALLOW_SINGLETONS.value,
        "max_group_size": _MAX_GROUP_SIZE.value,
    }
    return frame, budgets, options, "group_affinity", None


def _inputs():
    """Every input checked before any work; raises `InputError`.

    Returns:
        `(source, budgets, options, mode, steps or None)`.
    """
    given = [
        name
        for name, value in (
            ("--affinity", _AFFINITY.value),
            ("--performance", _PERFORMANCE.value),
            ("--group_affinity", _GROUP_AFFINITY.value),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise InputError(
            "Give exactly one of --affinity, --performance and "
            f"--group_affinity. Received: {given or 'none'}"
        )
    budgets = parse_budgets(_NUM_GROUPS.value)
    inputs = [
        v
        for v in (
            _AFFINITY.value,
            _PERFORMANCE.value,
            _GROUP_AFFINITY.value,
            _STEPS.value,
        )
        if v
    ]
    for flag, value in (("output", _OUTPUT.value), ("plot", _PLOT.value)):
        if value:
            check_output(value, flag)
            if any(
                pathlib.Path(value).resolve() == pathlib.Path(i).resolve()
                for i in inputs
            ):
                raise InputError(
                    f"--{flag} is one of the input files; it "
                    f"would overwrite it. Received: "
                    f"{flag}={value}"
                )
    if _TIME_LIMIT.value is not None and not _TIME_LIMIT.value > 0:
        raise InputError(
            "--time_limit must be a positive number of "
            f"seconds. Received: time_limit={_TIME_LIMIT.value}"
        )
    affinity_only = [
        f"--{name}"
        for name, given in (
            ("plot", _PLOT.value),
            ("stability", _STABILITY.value),
            ("top", _TOP.value > 1),
        )
        if given
    ]
    if affinity_only and _AFFINITY.value is None:
        raise InputError(
            f"{', '.join(affinity_only)}: need an affinity "
            f"matrix; give --affinity. Received: {given[0]}"
        )
    if _GROUP_AFFINITY.value is not None:
        return _group_affinity_inputs(budgets)
    if _PERFORMANCE.value is not None:
        path = pathlib.Path(_PERFORMANCE.value)
        if not path.is_file():
            raise InputError(
                f"Performance file not found. Received: performance={path}"
            )
        options = {"max_group_size": _MAX_GROUP_SIZE.value}
        return (
            performance_lib.read_performance(path),
            budgets,
            options,
            "performance",
            None,
        )
    if _TOP.value > 1 and not _OUTPUT.value:
        raise InputError(
            "--top writes candidates into the groups JSON; "
            f"give --output too. Received: top={_TOP.value}"
        )
    if _STABILITY.value and _NORMALIZE.value:
        raise InputError(
            "--stability scores groupings on the raw matrix; "
            "it cannot be combined with --normalize."
        )
    if 0 < _STABILITY.value < 10:
        raise InputError(
            "--stability needs at least 10 resamples. "
            f"Received: stability={_STABILITY.value}"
        )
    source = load_affinity(_AFFINITY.value)
    steps = (
        load_steps(_STEPS.value, _AFFINITY.value) if _STABILITY.value else None
    )
    options = {
        "normalize": _NORMALIZE.value,
        "allow_singletons": _ALLOW_SINGLETONS.value,
        "max_group_size": _MAX_GROUP_SIZE.value,
    }
    return source, budgets, options, "affinity", steps


def main(argv):
    del argv  # `_cli.run` refused extra arguments already
    try:
        source, budgets, options, mode, steps = _inputs()
        selection = choose.choose_groups(
            source,
            budgets,
            mode=mode,
            top=_TOP.value,
            steps=steps,
            resamples=_STABILITY.value or 200,
            seed=_SEED.value,
            time_limit=_TIME_LIMIT.value,
            progress=_print_progress if _PROGRESS.value else None,
            **options,
        )
        if mode == "group_affinity":
            print(describe_surrogate(group_lib.surrogate_fit(source)) + "\n")
    except (ValueError, TypeError) as error:
        print(f"tag-select: error: {error}", file=sys.stderr)
        return 1
    try:
        _report(selection, source)
    except (OSError, _errors.InputError) as error:
        print(f"tag-select: error: {error}", file=sys.stderr)
        return 1
    return 0


def _print_progress(line):
    print(line, file=sys.stderr)


def _report(selection, source):
    """Prints the table and writes --output and --plot."""
    stabilities = selection.stabilities
    print(
        "\n\n".join(
            format_result(r, selection.tasks)
            + ("" if stabilities is None else "\n" + stabilities[k].describe())
            for k, r in enumerate(selection.groupings)
        )
    )
    if _OUTPUT.value:
        document_lib.write_groups(_OUTPUT.value, selection.document)
        print(f"\nWrote {_OUTPUT.value}")
    if _PLOT.value:
        from tag_keras import figures

        figures.write_affinity_png(source, _PLOT.value)
        print(f"Wrote {_PLOT.value}")
    return 0


def run():
    """Console-script entry point (`--help` lists the flags)."""
    _cli.run(main, __name__, "tag-select")


if __name__ == "__main__":
    run()
