"""`tag-train`: from a groups JSON to trained groups and a decision.

    tag-train --model=MODULE:FUNCTION --data=MODULE:FUNCTION \\
              --groups=groups.json --out_dir=DIR [--seeds=0,1,2] \\
              [--max_seeds=8] [--margin=M] [--metric=auto|loss|error] \\
              [--epochs=N] [--patience=P] [--all_task_model=PATH.keras]

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
`DIR/decision.png`. Every input is checked before any training; bad input
ends with a one-line error and exit status 1.
"""

import importlib
import importlib.util
import inspect
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from tag_keras import _cli  # noqa: E402
from tag_keras import _errors  # noqa: E402

from tag_keras.select import document as document_lib  # noqa: E402

_MODEL = flags.DEFINE_string(
    "model", None, "MODULE:FUNCTION; the function takes a list of task "
    "names and returns a compiled keras.Model with one output per task.")
_DATA = flags.DEFINE_string(
    "data", None, "MODULE:FUNCTION; the function takes no argument and "
    "returns {'train': (x, y), 'validation': (x, y), 'test': (x, y)} (test "
    "optional; y a dict of task -> labels, NaN = missing), or "
    "tf.data.Datasets of such pairs.")
_GROUPS = flags.DEFINE_string(
    "groups", None, "The groups JSON of tag-select --output (with --top, "
    "each budget's candidates are trained and the best on validation "
    "data is kept).")
_OUT_DIR = flags.DEFINE_string(
    "out_dir", None, "Output directory; networks are cached in "
    "OUT_DIR/networks, so a rerun trains only what is missing.")
_SEEDS = flags.DEFINE_list(
    "seeds", ["0", "1", "2"], "Starting training seeds (at least 2); "
    "every network is trained once per seed.")
_MAX_SEEDS = flags.DEFINE_integer(
    "max_seeds", 8, "Seeds added, at planned looks (3, 5, 8 from 3 seeds),"
    " to the budgets still undecided, up to this many; the number of "
    "--seeds for fixed seeds.", lower_bound=2)
_MARGIN = flags.DEFINE_float(
    "margin", None, "The smallest gain worth more networks, in the "
    "metric's units summed over tasks (default: 2% of the all-task "
    "network's summed validation metric).")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Epochs per network.",
                               lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 32, "Training batch size (array data).", lower_bound=1)
_PATIENCE = flags.DEFINE_integer(
    "patience", 0, "Early stopping after this many epochs without a lower "
    "loss on the data's 'early_stopping' split (else on a slice carved "
    "from train; never the validation split, which decides), the best "
    "epoch's weights restored (0: off).", lower_bound=0)
_ALL_TASK_MODEL = flags.DEFINE_string(
    "all_task_model", None, "A saved .keras all-task model (e.g. the "
    "TaskAffinityModel that measured the affinities) used as the all-task "
    "network of the first seed instead of training one.")
_NUM_GROUPS = flags.DEFINE_list(
    "num_groups", None, "Budgets to train (default: every budget in "
    "--groups).")
_RANDOM = flags.DEFINE_integer(
    "random_groupings", 0, "Random groupings per budget trained as a "
    "baseline (every partition when there are at most this many: the "
    "exact expectation).", lower_bound=0)
_STL = flags.DEFINE_bool(
    "stl", False, "Also train one network per task (STL) and compare it "
    "with the all-task network (shown, never chosen).")
_ALPHA = flags.DEFINE_float(
    "alpha", 0.025, "Each answer's one-sided error rate, shared by every "
    "budget, candidate and look.", lower_bound=1e-6, upper_bound=0.25)
_METRIC = flags.DEFINE_enum(
    "metric", "auto", ["auto", "loss", "error"], "What decides: the summed "
    "validation error rate (classification heads), the summed loss, or "
    "auto: error when every head is a classifier, else loss. Choose what "
    "you will judge the networks on.")

#: What every flag needs, for the one-line errors.
_REQUIRED = ("model", "data", "groups", "out_dir")


InputError = _errors.InputError


def load_function(spec, flag, parameters):
    """The function `MODULE:FUNCTION` names, checked for its parameters.

    MODULE is a dotted module importable from the working directory, or a
    path to a `.py` file. `parameters` is how many positional arguments
    it must accept.
    """
    module_name, _, name = (spec or "").rpartition(":")
    if not module_name or not name:
        raise InputError(f"--{flag} must be MODULE:FUNCTION. Received: "
                         f"{flag}={spec}")
    try:
        if module_name.endswith(".py"):
            path = pathlib.Path(module_name)
            if not path.is_file():
                raise InputError(f"--{flag}: file not found. Received: "
                                 f"{flag}={spec}")
            module_spec = importlib.util.spec_from_file_location(
                path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except InputError:
        raise
    except Exception as error:  # Anything the user's module raises.
        raise InputError(
            f"--{flag}: cannot import {module_name}: "
            f"{type(error).__name__}: {' '.join(str(error).split())}. "
            f"Received: {flag}={spec}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise InputError(f"--{flag}: {module_name} has no function {name}. "
                         f"Received: {flag}={spec}")
    try:
        inspect.signature(function).bind(*([None] * parameters))
    except TypeError:
        wanted = ("no argument" if parameters == 0 else
                  "one argument (the list of task names)")
        raise InputError(
            f"--{flag}: {name} must take {wanted}; its signature is "
            f"{name}{inspect.signature(function)}. Received: {flag}={spec}"
        ) from None
    except ValueError:
        pass  # No signature to inspect (a builtin): it is called as is.
    return function


def load_data(function):
    """Calls the data function and checks its splits."""
    from tag_keras.train import data as data_lib

    try:
        data = function()
    except Exception as error:
        raise InputError(f"--data: the function raised {type(error).__name__}"
                         f": {' '.join(str(error).split())}") from None
    try:
        data_lib.check_splits(data, name="the --data function's result")
        tasks = data_lib.label_tasks(data["train"])
    except (TypeError, ValueError) as error:
        raise InputError(f"--data: {' '.join(str(error).split())}") from None
    return data, tasks


def read_budgets(document, num_groups, source):
    """`{budget: [(groups, serve), ...]}` from a validated document."""
    budgets = None
    if num_groups:
        try:
            budgets = [int(b) for b in num_groups]
        except ValueError:
            raise InputError("--num_groups must be integers. Received: "
                             f"num_groups={','.join(num_groups)}") from None
    try:
        return document_lib.candidates_by_budget(document, budgets)
    except ValueError as error:
        raise InputError(f"{str(error).replace('the document', source)}. "
                         f"Received: num_groups={','.join(num_groups)}"
                         ) from None


def dry_run(build, data, groups, flag="--model"):
    """Builds each distinct group's model and evaluates it on one small
    training batch (no training), so that a model function that drops a
    head, labels of the wrong shape or an unusable task name fail now, in
    one line naming the group, not at the first fit."""
    first = _first_batch(data["train"])
    for group in dict.fromkeys(tuple(g) for g in groups):
        name = f"({', '.join(group)})"
        try:
            model = build(list(group))
        except Exception as error:
            raise InputError(
                f"{flag}: building the network of {name} raised "
                f"{_one_line(error)}") from None
        _check_outputs(model, group, f"{flag}'s network of {name}")
        _evaluate_once(model, first, group, f"{flag}'s network of {name}")


def _first_batch(split, size=4):
    if isinstance(split, (tuple, list)):
        import numpy as np
        from keras import tree

        x, y = split[0], split[1]
        x = tree.map_structure(lambda v: np.asarray(v)[:size], x)
        return x, {t: np.asarray(v)[:size] for t, v in y.items()}
    for x, y, *_ in split.take(1).as_numpy_iterator():
        return x, y
    raise InputError("--data: the 'train' split holds no batch")


def _evaluate_once(model, batch, group, what):
    import numpy as np

    x, y = batch
    try:
        outputs = model(x, training=False)
    except Exception as error:  # Whatever Keras raises, in one line.
        _refuse_task_names(error, group)
        raise InputError(
            f"{what} cannot take the 'train' split's inputs: "
            f"{_one_line(error)}") from None
    for task in group:
        labels = np.asarray(y[task])
        width = (outputs[task].shape[-1] if isinstance(outputs, dict)
                 and task in outputs else None)
        if labels.ndim >= 2 and labels.shape[-1] > 1 and width not in (
                None, labels.shape[-1]):
            raise InputError(
                f"--data: task {task!r} has labels of shape "
                f"{labels.shape[1:]} per example, but {what} gives "
                f"{width} value(s) per example for it; give one label per "
                "example (or one per unit of a multi-label head).")
    try:
        model.test_on_batch(x, {t: np.nan_to_num(np.asarray(y[t]))
                                for t in group})
    except Exception as error:  # Whatever Keras raises, in one line.
        _refuse_task_names(error, group)
        raise InputError(
            f"{what} failed a one-batch dry run on the 'train' split: "
            f"{_one_line(error)}") from None


def _refuse_task_names(error, group):
    """A clear line when Keras refused a task's name as a scope name."""
    bad = [t for t in group if f"'{t}' is not a valid scope name"
           in str(error)]
    if bad:
        raise InputError(
            f"Task name {bad[0]!r} cannot name a layer under TensorFlow "
            "(letters, digits and _ . / > - only); rename the task in "
            "--data and --groups.") from None


def _one_line(error):
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    return f"{type(error).__name__}: {' '.join(text.split())[:400]}"


def check_model(build, tasks):
    """Builds the all-task model once (no training) to check its outputs."""
    try:
        model = build(list(tasks))
    except Exception as error:
        raise InputError(
            f"--model: building the all-task model raised "
            f"{type(error).__name__}: {' '.join(str(error).split())}"
        ) from None
    _check_outputs(model, tasks, "--model's model")


def _check_outputs(model, tasks, what):
    import keras

    if not isinstance(model, keras.Model):
        raise InputError(f"{what} must be a keras.Model. Received: "
                         f"{type(model).__name__}")
    from tag_keras.train import networks

    names = networks.output_keys(model)
    missing = [t for t in tasks if t not in names]
    if missing:
        raise InputError(
            f"--groups names tasks {missing} that {what} does not produce; "
            f"its outputs are {names}. Received: groups={_GROUPS.value}")
    if not getattr(model, "compiled", False):
        raise InputError(f"{what} is not compiled; call model.compile in "
                         "the model function.")


def load_all_task_model(path, tasks):
    """Loads `--all_task_model` and checks it serves every task."""
    if not pathlib.Path(path).is_file():
        raise InputError(f"--all_task_model: file not found. Received: "
                         f"all_task_model={path}")
    import keras

    # Registers TaskAffinityModel for `load_model`.
    from tag_keras.measure import model as _  # noqa: F401

    import zipfile

    if not zipfile.is_zipfile(path):
        raise InputError(
            f"--all_task_model: {path} exists but is not a .keras file (a "
            "zip archive written by model.save); it may be damaged or "
            f"another format. Received: all_task_model={path}")
    try:
        model = keras.saving.load_model(path)
    except Exception as error:
        raise InputError(
            f"--all_task_model: cannot load {path}: {type(error).__name__}: "
            f"{' '.join(str(error).split())}") from None
    if not getattr(model, "compiled", False):
        raise InputError(
            f"--all_task_model: {path} holds an uncompiled model; compile "
            "it (the losses decide) before model.save. Received: "
            f"all_task_model={path}")
    _check_outputs(model, tasks, "--all_task_model")
    from tag_keras.train import networks

    extra = [k for k in networks.output_keys(model) if k not in tasks]
    if extra:
        raise InputError(
            f"--all_task_model has outputs {extra} that --groups does not "
            f"name; the all-task network serves exactly {list(tasks)}. "
            f"Received: all_task_model={path}")
    return model


def check_settings(out_dir, settings):
    """Refuses an `out_dir` whose cached networks used other settings."""
    path = pathlib.Path(out_dir) / "train_settings.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = None
        if not isinstance(stored, dict):
            raise InputError(
                f"{path} cannot be read as the settings of a tag-train run;"
                f" give a new --out_dir, or delete {path} (the cached "
                "networks carry their own fingerprints and are retrained "
                f"where stale). Received: out_dir={out_dir}")
        differ = [k for k in sorted(set(stored) | set(settings))
                  if stored.get(k) != settings.get(k)]
        if differ:
            was = ", ".join(f"{k}={stored.get(k)!r} (now "
                            f"{settings.get(k)!r})" for k in differ)
            raise InputError(
                f"{out_dir} holds networks trained with other settings: "
                f"{was}. Give a new --out_dir to keep both. Received: "
                f"out_dir={out_dir}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"Cannot create --out_dir: {error.strerror}. "
                         f"Received: out_dir={out_dir}") from None
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"--out_dir is not writable. Received: "
                         f"out_dir={out_dir}")
    from tag_keras import _files

    _files.replace_atomically(path, json.dumps(settings, indent=2))


def _inputs():
    missing = [f"--{n}" for n in _REQUIRED if not flags.FLAGS[n].value]
    if missing:
        raise InputError(f"{', '.join(missing)} required. Received: none")
    try:
        seeds = [int(s) for s in _SEEDS.value]
    except ValueError:
        raise InputError("--seeds must be integers. Received: seeds="
                         f"{','.join(_SEEDS.value)}") from None
    if len(set(seeds)) != len(seeds):
        raise InputError("--seeds must be distinct: a repeated seed trains "
                         "the same network twice. Received: seeds="
                         f"{','.join(_SEEDS.value)}")
    outside = [s for s in seeds if not 0 <= s < 2 ** 32]
    if outside:
        raise InputError(f"--seeds must be in [0, 2**32); {outside} are not."
                         f" Received: seeds={','.join(_SEEDS.value)}")
    seeds = sorted(seeds)
    if len(seeds) < 2:
        raise InputError(
            "--seeds needs at least 2 seeds: with one, the seed variance "
            "cannot be estimated and nothing can be decided. Received: "
            f"seeds={','.join(_SEEDS.value)}")
    if _MAX_SEEDS.value < len(seeds):
        raise InputError(
            "--max_seeds must be at least the number of --seeds. Received: "
            f"max_seeds={_MAX_SEEDS.value} with {len(seeds)} seeds")
    if _MARGIN.value is not None and not _MARGIN.value > 0:
        raise InputError(
            "--margin must be positive, in the metric's units (the smallest"
            f" gain worth splitting for). Received: margin={_MARGIN.value}")
    build = load_function(_MODEL.value, "model", 1)
    data_function = load_function(_DATA.value, "data", 0)
    try:
        document = document_lib.read_groups(_GROUPS.value)
    except document_lib.GroupsDocumentError as error:
        raise InputError(f"--groups: {error}") from None
    data, label_tasks = load_data(data_function)
    candidates = read_budgets(document, _NUM_GROUPS.value, _GROUPS.value)
    tasks = document.get("tasks") or sorted(
        {t for e in document["results"] for t in e["serve"]})
    unknown = [t for t in tasks if t not in label_tasks]
    if unknown:
        raise InputError(
            f"--groups names tasks {unknown} the --data has no labels for; "
            f"its tasks are {label_tasks}. Received: groups={_GROUPS.value}")
    from tag_keras.train import data as data_lib

    try:
        data_lib.check_labels(data, tasks)
    except ValueError as error:
        raise InputError(f"--data: {error}") from None
    check_model(build, tasks)
    groups = [tuple(tasks)] + [g for options in candidates.values()
                               for grouping, _ in options for g in grouping]
    if _STL.value:
        groups += [(t,) for t in tasks]
    dry_run(build, data, groups)
    model = (load_all_task_model(_ALL_TASK_MODEL.value, tasks)
             if _ALL_TASK_MODEL.value else None)
    if model is not None:
        _evaluate_once(model, _first_batch(data["train"]), tasks,
                       "--all_task_model")
    settings = {"model": _MODEL.value, "data": _DATA.value,
                "epochs": _EPOCHS.value, "batch_size": _BATCH_SIZE.value,
                "patience": _PATIENCE.value,
                "all_task_model": _ALL_TASK_MODEL.value,
                # 2: early stopping never reads the validation split.
                "protocol": 2}
    check_settings(_OUT_DIR.value, settings)
    return build, data, tasks, seeds, candidates, model


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tag_keras import _lock

    try:
        lock = _lock.acquire(_OUT_DIR.value, what="--out_dir") if (
            _OUT_DIR.value) else None
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
        build, data, tasks, seeds, candidates, model = _inputs()
    except InputError as error:
        print(f"tag-train: error: {error}", file=sys.stderr)
        return 1
    import keras

    from tag_keras import train

    callbacks = []
    if _PATIENCE.value:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=_PATIENCE.value,
            restore_best_weights=True))
    try:
        trainer = train.GroupTrainer(
            build, data, seeds=seeds, tasks=tasks,
            fit_kwargs={"epochs": _EPOCHS.value, "callbacks": callbacks},
            batch_size=_BATCH_SIZE.value, directory=_OUT_DIR.value,
            log=lambda line: print(line, flush=True))
    except ValueError as error:
        print(f"tag-train: error: --data: {error}", file=sys.stderr)
        return 1
    if trainer.early_stopping:
        print(f"Early stopping reads {trainer.early_stopping}.", flush=True)
    if model is not None:
        from tag_keras.train import fingerprint

        trainer.expect_model(tasks, seeds[0], "file " + fingerprint
                             .file_digest(_ALL_TASK_MODEL.value))
        if not trainer.has(tasks, seeds[0]):
            trainer.add_model(model, seeds[0])
    random = {b: train.random_partitions(tasks, b, _RANDOM.value, seed=b)
              for b in candidates if _RANDOM.value and b <= len(tasks)}
    try:
        baselines = {}
        if _STL.value:
            baselines["STL"] = (tuple((t,) for t in tasks),
                                {t: i for i, t in enumerate(tasks)})
        decision = train.decide(
            trainer, candidates, margin=_MARGIN.value, alpha=_ALPHA.value,
            metric=_METRIC.value, max_seeds=_MAX_SEEDS.value, random=random,
            baselines=baselines, log=lambda line: print(line, flush=True))
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
