"""`tag-train`: from a groups JSON to trained groups and a decision.

    tag-train --model=MODULE:FUNCTION --data=MODULE:FUNCTION \\
              --groups=groups.json --out_dir=DIR [--seeds=0,1,2] \\
              [--max_seeds=8] [--margin=M] [--metric=auto|loss|error] \\
              [--epochs=N] [--patience=P] [--all_task_model=PATH.keras]
              [--workers=N | --ray_address=ADDRESS] [--cpus_per_network=C]
              [--gpus_per_network=G]

`--model`'s function takes a list of task names and returns a compiled
`keras.Model` with one output per task; `--data`'s takes no argument and
returns `{"train": ..., "validation": ..., "test": ...,
"early_stopping": ...}` (test and early_stopping optional), each `(x, y)`
with `y` a dict of task -> labels, or a `tf.data.Dataset` of such pairs.
MODULE is importable from the working directory or is a path to a `.py`
file.

Every distinct group of every budget (and its candidates, with
`tag-select --top`) is trained once per seed, as is the all-task network
(or `--all_task_model` is used for the first seed), all cached in
`DIR/networks/` so a rerun resumes. Each budget's grouping is compared
with the all-task network on the validation split
(`tag_keras.train.decision`): "split", "keep together" or "undecided"
against `--margin`; seeds are added, at planned looks up to
`--max_seeds`, to the budgets still undecided. Early stopping
(`--patience`) never reads the validation split: it stops on the data's
"early_stopping" split, or a slice carved from train. Writes
`DIR/decision.json`, `DIR/decision.csv`, `DIR/results.csv` and
`DIR/decision.png`. With `--workers` or `--ray_address` the networks
train in parallel as Ray tasks (`tag_keras.train.executors`), with the
same numbers. Every input is checked before any training; bad input
ends with a one-line error and exit status 1.
"""

import os
import sys
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tag_keras_entry

tag_keras_entry.pin_kernels()  # run as python -m tag_keras.train.cli too

from absl import flags

from tag_keras import _cli
from tag_keras import _errors
from tag_keras.select import document as document_lib
from tag_keras.train import executor_flags
from tag_keras.train import inputs

_MODEL = flags.DEFINE_string(
    "model",
    None,
    "MODULE:FUNCTION; the function takes a list of task "
    "names and returns a compiled keras.Model with one output per task.",
)
_DATA = flags.DEFINE_string(
    "data",
    None,
    "MODULE:FUNCTION; the function takes no argument and "
    "returns {'train': (x, y), 'validation': (x, y), 'test': (x, y)} (test "
    "optional; y a dict of task -> labels, NaN = missing), or "
    "tf.data.Datasets of such pairs.",
)
_GROUPS = flags.DEFINE_string(
    "groups",
    None,
    "The groups JSON of tag-select --output (with --top, "
    "each budget's candidates are trained and the best on validation "
    "data is kept).",
)
_OUT_DIR = flags.DEFINE_string(
    "out_dir",
    None,
    "Output directory; networks are cached in "
    "OUT_DIR/networks, so a rerun trains only what is missing.",
)
_SEEDS = flags.DEFINE_list(
    "seeds",
    ["0", "1", "2"],
    "Starting training seeds (at least 2); "
    "every network is trained once per seed.",
)
_MAX_SEEDS = flags.DEFINE_integer(
    "max_seeds",
    8,
    "Seeds added, at planned looks (3, 5, 8 from 3 seeds),"
    " to the budgets still undecided, up to this many; the number of "
    "--seeds for fixed seeds.",
    lower_bound=2,
)
_MARGIN = flags.DEFINE_float(
    "margin",
    None,
    "The smallest gain worth more networks, in the "
    "metric's units summed over tasks (default: 2% of the all-task "
    "network's summed validation metric).",
)
_EPOCHS = flags.DEFINE_integer(
    "epochs", 10, "Epochs per network.", lower_bound=1
)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 32, "Training batch size (array data).", lower_bound=1
)
_PATIENCE = flags.DEFINE_integer(
    "patience",
    0,
    "Early stopping after this many epochs without a lower "
    "loss on the data's 'early_stopping' split (else on a slice carved "
    "from train; never the validation split, which decides), the best "
    "epoch's weights restored (0: off).",
    lower_bound=0,
)
_ALL_TASK_MODEL = flags.DEFINE_string(
    "all_task_model",
    None,
    "A saved .keras all-task model (e.g. the "
    "TaskAffinityModel that measured the affinities) used as the all-task "
    "network of the first seed instead of training one.",
)
_NUM_GROUPS = flags.DEFINE_list(
    "num_groups", None, "Budgets to train (default: every budget in --groups)."
)
_RANDOM = flags.DEFINE_integer(
    "random_groupings",
    0,
    "Random groupings per budget trained as a "
    "baseline (every partition when there are at most this many: the "
    "exact expectation).",
    lower_bound=0,
)
_STL = flags.DEFINE_bool(
    "stl",
    False,
    "Also train one network per task (STL) and compare it "
    "with the all-task network (shown, never chosen).",
)
_ALPHA = flags.DEFINE_float(
    "alpha",
    0.025,
    "Each answer's one-sided error rate, shared by every "
    "budget, candidate and look.",
    lower_bound=1e-6,
    upper_bound=0.25,
)
_METRIC = flags.DEFINE_enum(
    "metric",
    "auto",
    ["auto", "loss", "error"],
    "What decides: the summed "
    "validation error rate (classification heads), the summed loss, or "
    "auto: error when every head is a classifier, else loss. Choose what "
    "you will judge the networks on.",
)

_EXECUTOR = executor_flags.define()
for _name in executor_flags.NAMES:
    flags.declare_key_flag(_name)

#: What every flag needs, for the one-line errors.
_REQUIRED = ("model", "data", "groups", "out_dir")


InputError = _errors.InputError


def _inputs():
    missing = [f"--{n}" for n in _REQUIRED if not flags.FLAGS[n].value]
    if missing:
        raise InputError(f"{', '.join(missing)} required. Received: none")
    try:
        seeds = [int(s) for s in _SEEDS.value]
    except ValueError:
        raise InputError(
            "--seeds must be integers. Received: seeds="
            f"{','.join(_SEEDS.value)}"
        ) from None
    if len(set(seeds)) != len(seeds):
        raise InputError(
            "--seeds must be distinct: a repeated seed trains "
            "the same network twice. Received: seeds="
            f"{','.join(_SEEDS.value)}"
        )
    outside = [s for s in seeds if not 0 <= s < 2**32]
    if outside:
        raise InputError(
            f"--seeds must be in [0, 2**32); {outside} are not."
            f" Received: seeds={','.join(_SEEDS.value)}"
        )
    seeds = sorted(seeds)
    if len(seeds) < 2:
        raise InputError(
            "--seeds needs at least 2 seeds: with one, the seed variance "
            "cannot be estimated and nothing can be decided. Received: "
            f"seeds={','.join(_SEEDS.value)}"
        )
    if _MAX_SEEDS.value < len(seeds):
        raise InputError(
            "--max_seeds must be at least the number of --seeds. Received: "
            f"max_seeds={_MAX_SEEDS.value} with {len(seeds)} seeds"
        )
    if _MARGIN.value is not None and not _MARGIN.value > 0:
        raise InputError(
            "--margin must be positive, in the metric's units (the smallest"
            f" gain worth splitting for). Received: margin={_MARGIN.value}"
        )
    executor = executor_flags.executor_from_flags(_EXECUTOR)
    build = inputs.load_function(_MODEL.value, "model", 1)
    data_function = inputs.load_function(_DATA.value, "data", 0)
    try:
        document = document_lib.read_document(_GROUPS.value)
    except _errors.InputError as error:
        raise InputError(f"--groups: {error}") from None
    data, label_tasks = inputs.load_data(data_function)
    candidates = inputs.read_budgets(
        document, _NUM_GROUPS.value, _GROUPS.value
    )
    tasks = list(document.tasks)
    unknown = [t for t in tasks if t not in label_tasks]
    if unknown:
        raise InputError(
            f"--groups names tasks {unknown} the --data has no labels for; "
            f"its tasks are {label_tasks}. Received: groups={_GROUPS.value}"
        )
    inputs.check_labels(data, tasks)
    groups = [tuple(tasks)] + [
        g
        for options in candidates.values()
        for grouping, _ in options
        for g in grouping
    ]
    if _STL.value:
        groups += [(t,) for t in tasks]
    inputs.dry_run(build, data, groups)
    model = (
        inputs.load_all_task_model(_ALL_TASK_MODEL.value, tasks)
        if _ALL_TASK_MODEL.value
        else None
    )
    if model is not None:
        inputs.check_on_data(model, data, tasks, "--all_task_model")
    settings = {
        "model": _MODEL.value,
        "data": _DATA.value,
        "epochs": _EPOCHS.value,
        "batch_size": _BATCH_SIZE.value,
        "patience": _PATIENCE.value,
        "all_task_model": _ALL_TASK_MODEL.value,
        # 2: early stopping never reads the validation split.
        "protocol": 2,
    }
    inputs.check_settings(_OUT_DIR.value, settings)
    return types.SimpleNamespace(
        build=build,
        data_function=data_function,
        data=data,
        tasks=tasks,
        seeds=seeds,
        candidates=candidates,
        model=model,
        executor=executor,
    )


def main(argv):
    del argv  # `_cli.run` refused extra arguments already
    from tag_keras import _lock

    try:
        lock = (
            _lock.acquire(_OUT_DIR.value, what="--out_dir")
            if (_OUT_DIR.value)
            else None
        )
    except (_lock.DirectoryInUseError, OSError) as error:
        print(f"tag-train: error: {error}", file=sys.stderr)
        return 1
    try:
        return _main()
    finally:
        if lock:
            _lock.release(lock)


def _main():
    try:
        given = _inputs()
        executor_flags.start(
            given.executor, os.path.join(_OUT_DIR.value, "networks")
        )
    except InputError as error:
        print(f"tag-train: error: {error}", file=sys.stderr)
        return 1
    try:
        return _train(given)
    finally:
        if given.executor is not None:
            given.executor.stop()


def _train(given):
    import keras

    from tag_keras import train

    callbacks = []
    if _PATIENCE.value:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=_PATIENCE.value,
                restore_best_weights=True,
            )
        )
    try:
        trainer = train.GroupTrainer(
            given.build,
            given.data,
            seeds=given.seeds,
            tasks=given.tasks,
            fit_kwargs={"epochs": _EPOCHS.value, "callbacks": callbacks},
            batch_size=_BATCH_SIZE.value,
            directory=_OUT_DIR.value,
            log=lambda line: print(line, flush=True),
            executor=given.executor,
            data_function=given.data_function,
        )
    except ValueError as error:
        print(f"tag-train: error: --data: {error}", file=sys.stderr)
        return 1
    if given.executor is not None:
        print(f"Networks train as Ray tasks: {given.executor!r}.", flush=True)
    if trainer.early_stopping:
        print(f"Early stopping reads {trainer.early_stopping}.", flush=True)
    tasks, seeds, candidates = given.tasks, given.seeds, given.candidates
    if given.model is not None:
        from tag_keras.train import fingerprint

        trainer.expect_model(
            tasks,
            seeds[0],
            "file " + fingerprint.file_digest(_ALL_TASK_MODEL.value),
        )
        if not trainer.has(tasks, seeds[0]):
            trainer.add_model(given.model, seeds[0])
    random = {
        b: train.random_partitions(tasks, b, _RANDOM.value, seed=b)
        for b in candidates
        if _RANDOM.value and b <= len(tasks)
    }
    try:
        baselines = {}
        if _STL.value:
            baselines["STL"] = (
                tuple((t,) for t in tasks),
                {t: i for i, t in enumerate(tasks)},
            )
        decision = train.decide(
            trainer,
            candidates,
            margin=_MARGIN.value,
            alpha=_ALPHA.value,
            metric=_METRIC.value,
            max_seeds=_MAX_SEEDS.value,
            random=random,
            baselines=baselines,
            log=lambda line: print(line, flush=True),
        )
        paths = train.write_decision(_OUT_DIR.value, decision, trainer)
    except (OSError, ValueError) as error:
        print(f"tag-train: error: {error}", file=sys.stderr)
        return 1
    print()
    print(train.format_table(decision))
    print(f"\nWrote {', '.join(paths.values())}")
    return 0


def run():
    """Console-script entry point (`--help` lists the flags)."""
    _cli.run(main, __name__, "tag-train")


if __name__ == "__main__":
    run()
