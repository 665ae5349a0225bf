"""`tag-train`'s inputs, each checked before any training.

Loading the user's functions (`load_function`), the data (`load_data`),
the budgets of a groups document (`read_budgets`), the saved all-task
model (`load_all_task_model`), the settings of an output directory
(`check_settings`), and the dry run: every distinct group's network is
built and evaluated on one training batch (`dry_run`). Each failure is an
`InputError` whose message is one line naming the flag, task or group.
No flag is read here: the command passes the values.
"""

import importlib
import importlib.util
import inspect
import json
import os
import pathlib
import re
import sys
import zipfile

from tag_keras import _errors

InputError = _errors.InputError


def load_function(spec, flag, parameters):
    """The function `MODULE:FUNCTION` names, checked for its parameters.

    MODULE is a dotted module importable from the working directory, or a
    path to a `.py` file. `parameters` is how many positional arguments
    it must accept.
    """
    module_name, _, name = (spec or "").rpartition(":")
    if not module_name or not name:
        raise InputError(
            f"--{flag} must be MODULE:FUNCTION. Received: {flag}={spec}"
        )
    try:
        if module_name.endswith(".py"):
            path = pathlib.Path(module_name)
            if not path.is_file():
                raise InputError(
                    f"--{flag}: file not found. Received: {flag}={spec}"
                )
            module_spec = importlib.util.spec_from_file_location(
                path.stem, path
            )
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 (the user's module)
        raise InputError(
            f"--{flag}: cannot import {module_name}: "
            f"{type(error).__name__}: {' '.join(str(error).split())}. "
            f"Received: {flag}={spec}"
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise InputError(
            f"--{flag}: {module_name} has no function {name}. "
            f"Received: {flag}={spec}"
        )
    try:
        inspect.signature(function).bind(*([None] * parameters))
    except TypeError:
        wanted = (
            "no argument"
            if parameters == 0
            else "one argument (the list of task names)"
        )
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
    except Exception as error:  # noqa: BLE001 (the user's function)
        raise InputError(
            f"--data: the function raised {type(error).__name__}"
            f": {' '.join(str(error).split())}"
        ) from None
    try:
        data_lib.check_splits(data, name="the --data function's result")
        tasks = data_lib.label_tasks(data["train"])
    except (TypeError, ValueError) as error:
        raise InputError(f"--data: {' '.join(str(error).split())}") from None
    return data, tasks


def check_labels(data, tasks):
    """`tag_keras.train.data.check_labels`, as an `InputError` of --data."""
    from tag_keras.train import data as data_lib

    try:
        data_lib.check_labels(data, tasks)
    except ValueError as error:
        raise InputError(f"--data: {error}") from None


def read_budgets(document, num_groups, source):
    """`{budget: [Candidate, ...]}` of a `GroupsDocument` (`--num_groups`'s
    budgets, or all)."""
    budgets = None
    if num_groups:
        try:
            budgets = [int(b) for b in num_groups]
        except ValueError:
            raise InputError(
                "--num_groups must be integers. Received: "
                f"num_groups={','.join(num_groups)}"
            ) from None
    try:
        return document.candidates(budgets)
    except ValueError as error:
        raise InputError(
            f"{str(error).replace('the document', source)}. "
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
        except Exception as error:  # noqa: BLE001 (the user's function)
            raise InputError(
                f"{flag}: building the network of {name} raised "
                f"{_one_line(error)}"
            ) from None
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
    """Calls `model` on one batch, checks that its outputs are keyed by
    every task of `group` (a model without an input shape is built by
    this call), the labels' width per task, and one `test_on_batch`."""
    import keras
    import numpy as np

    if not isinstance(model, keras.Model):
        raise InputError(
            f"{what} must be a keras.Model. Received: {type(model).__name__}"
        )
    x, y = batch
    try:
        outputs = model(x, training=False)
    except Exception as error:  # noqa: BLE001 (any Keras error)
        _refuse_task_names(error, group)
        raise InputError(
            f"{what} cannot take the 'train' split's inputs: "
            f"{_one_line(error)}"
        ) from None
    _check_outputs(model, group, what, outputs)
    for task in group:
        labels = np.asarray(y[task])
        width = (
            outputs[task].shape[-1]
            if isinstance(outputs, dict) and task in outputs
            else None
        )
        if (
            labels.ndim >= 2
            and labels.shape[-1] > 1
            and width not in (None, labels.shape[-1])
        ):
            raise InputError(
                f"--data: task {task!r} has labels of shape "
                f"{labels.shape[1:]} per example, but {what} gives "
                f"{width} value(s) per example for it; give one label per "
                "example (or one per unit of a multi-label head)."
            )
    try:
        model.test_on_batch(
            x, {t: np.nan_to_num(np.asarray(y[t])) for t in group}
        )
    except Exception as error:  # noqa: BLE001 (any Keras error)
        _refuse_task_names(error, group)
        raise InputError(
            f"{what} failed a one-batch dry run on the 'train' split: "
            f"{_one_line(error)}"
        ) from None


def check_on_data(model, data, tasks, what):
    """Evaluates a built model (e.g. the saved all-task model) on one
    training batch; one line naming `what` if it cannot."""
    _evaluate_once(model, _first_batch(data["train"]), tasks, what)


def _refuse_task_names(error, group):
    """A clear line when Keras refused a task's name as a scope name."""
    bad = [
        t for t in group if f"'{t}' is not a valid scope name" in str(error)
    ]
    if bad:
        raise InputError(
            f"Task name {bad[0]!r} cannot name a layer under TensorFlow "
            "(letters, digits and _ . / > - only); rename the task in "
            "--data and --groups."
        ) from None


def _one_line(error):
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    return f"{type(error).__name__}: {' '.join(text.split())[:400]}"


def _check_outputs(model, tasks, what, outputs=None):
    """Refuses a `keras.Model` that is not compiled or lacks an output
    keyed by each task (the keys of `outputs`, when it was called)."""
    from tag_keras.train import networks

    names = (
        [str(k) for k in outputs]
        if isinstance(outputs, dict)
        else networks.output_keys(model)
    )
    missing = [t for t in tasks if t not in names]
    if missing:
        raise InputError(
            f"--groups names tasks {missing} that {what} does not produce; "
            f"its outputs are {names}."
        )
    if not getattr(model, "compiled", False):
        raise InputError(
            f"{what} is not compiled; call model.compile in "
            "the model function."
        )


def load_all_task_model(path, tasks):
    """Loads `--all_task_model` and checks it serves every task."""
    if not pathlib.Path(path).is_file():
        raise InputError(
            f"--all_task_model: file not found. Received: "
            f"all_task_model={path}"
        )
    import keras

    # Registers TaskAffinityModel for `load_model`.
    from tag_keras.measure import model as _  # noqa: F401

    if not zipfile.is_zipfile(path):
        raise InputError(
            f"--all_task_model: {path} exists but is not a .keras file (a "
            "zip archive written by model.save); it may be damaged or "
            f"another format. Received: all_task_model={path}"
        )
    try:
        model = keras.saving.load_model(path)
    except Exception as error:  # noqa: BLE001 (any bad file)
        raise InputError(
            f"--all_task_model: cannot load {path}: {type(error).__name__}: "
            f"{' '.join(str(error).split())}"
        ) from None
    if not getattr(model, "compiled", False):
        raise InputError(
            f"--all_task_model: {path} holds an uncompiled model; compile "
            "it (the losses decide) before model.save. Received: "
            f"all_task_model={path}"
        )
    _check_outputs(model, tasks, "--all_task_model")
    from tag_keras.train import networks

    extra = [k for k in networks.output_keys(model) if k not in tasks]
    if extra:
        raise InputError(
            f"--all_task_model has outputs {extra} that --groups does not "
            f"name; the all-task network serves exactly {list(tasks)}. "
            f"Received: all_task_model={path}"
        )
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
                f"where stale). Received: out_dir={out_dir}"
            )
        differ = [
            k
            for k in sorted(set(stored) | set(settings))
            if stored.get(k) != settings.get(k)
        ]
        if differ:
            was = ", ".join(
                f"{k}={stored.get(k)!r} (now {settings.get(k)!r})"
                for k in differ
            )
            raise InputError(
                f"{out_dir} holds networks trained with other settings: "
                f"{was}. Give a new --out_dir to keep both. Received: "
                f"out_dir={out_dir}"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(
            f"Cannot create --out_dir: {error.strerror}. "
            f"Received: out_dir={out_dir}"
        ) from None
    if not os.access(path.parent, os.W_OK):
        raise InputError(
            f"--out_dir is not writable. Received: out_dir={out_dir}"
        )
    from tag_keras import _files

    _files.replace_atomically(path, json.dumps(settings, indent=2))
