"""The task core (`tag_keras.tasks`): names, per-task losses, shared-variable
discovery and NaN masking, each one implementation that the training step
and the diagnostics both use (issue 27 item 2)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tag_keras
from tag_keras import _keras_private
from tag_keras.tasks import labels as labels_lib
from tag_keras.tasks import shared as shared_lib
from tag_keras.tasks.losses import TaskLosses
from tag_keras.tasks.names import check_task_names


def _model(names=("a", "b", "c")):
    """x -> trunk -> heads; task `names[2]` reads the input directly, so it
    depends on no shared variable."""
    inputs = keras.Input((3,))
    trunk = keras.layers.Dense(4, name="trunk")(inputs)
    outputs = {names[0]: keras.layers.Dense(1, name="head0")(trunk),
               names[1]: keras.layers.Dense(1, name="head1")(trunk),
               names[2]: keras.layers.Dense(1, name="head2")(inputs)}
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss={n: "mse" for n in names},
                  loss_weights={n: w for n, w in zip(names, (1.0, 2.0, 0.5))})
    return model


def _batch(names=("a", "b", "c"), size=5):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(size, 3)).astype("float32")
    return x, {n: rng.normal(size=(size, 1)).astype("float32") for n in names}


@pytest.mark.parametrize("names, error, match", [
    ("ab", TypeError, "task_names='ab'"),
    (["a", 1], TypeError, "strings"),
    (["a", "b", "a"], ValueError, r"\['a'\] repeat"),
    (["a"], ValueError, "at least two tasks"),
])
def test_bad_task_names_are_one_line_errors(names, error, match):
    with pytest.raises(error, match=match) as raised:
        check_task_names(names, minimum=2)
    assert "\n" not in str(raised.value)


def test_separator_is_refused_only_where_groups_are_written():
    assert check_task_names(["a|b", "c"]) == ("a|b", "c")
    with pytest.raises(ValueError, match=r"joined by '\|'.*\['a\|b'\]"):
        check_task_names(["a|b", "c"], groups=True)


def test_discovery_finds_shared_heads_and_each_tasks_parameters():
    model = _model()
    x, y = _batch()
    losses_of = TaskLosses(_keras_private.compile_loss(model))
    with tf.GradientTape(persistent=True) as tape:
        y_pred = model(x)
        losses, _, _ = losses_of(y, y_pred, track=False)
    found = shared_lib.discover(model, tape, losses, None, ["a", "b", "c"])
    names = [v.path for v in model.trainable_variables]
    assert [names[k] for k in found.shared] == ["trunk/kernel", "trunk/bias"]
    assert found.attached == [True, True, False]
    assert found.kernels == [True, False]
    assert [[names[k] for k in ks] for ks in found.per_task] == [
        ["trunk/kernel", "trunk/bias", "head0/kernel", "head0/bias"],
        ["trunk/kernel", "trunk/bias", "head1/kernel", "head1/bias"],
        ["head2/kernel", "head2/bias"]]
    assert sorted(names[k] for k in found.heads) == sorted(
        n for n in names if n.startswith("head"))


def test_task_losses_are_the_compiled_losses_reduced_and_per_example():
    model = _model()
    x, y = _batch()
    y_pred = model(x)
    task_losses = TaskLosses(_keras_private.compile_loss(model))
    losses, _, _ = task_losses(y, y_pred, track=False)
    per_example = {t: np.mean((y[t] - np.asarray(y_pred[t])) ** 2, axis=1)
                   for t in y}
    for task, weight in zip("abc", (1.0, 2.0, 0.5)):
        assert float(losses[task]) == pytest.approx(
            weight * per_example[task].mean(), rel=1e-5)
        functions = task_losses.functions(y, y_pred)
        np.testing.assert_allclose(
            TaskLosses.example_losses(functions[task], y[task],
                                      y_pred[task]),
            per_example[task], rtol=1e-5)
    total = model.compute_loss(x, y, y_pred)
    assert float(total) == pytest.approx(
        sum(float(v) for v in losses.values()), rel=1e-5)


def test_nan_masking_is_one_rule_in_the_graph_and_in_numpy():
    labels = np.array([[1.0], [np.nan], [3.0], [np.nan]], "float32")
    masked, weights = labels_lib.mask_missing_labels({"a": labels}, None)
    np.testing.assert_array_equal(masked["a"], [[1.0], [0.0], [3.0], [0.0]])
    # Mean over the batch of the weighted loss = mean over labelled ones.
    np.testing.assert_array_equal(weights["a"], [2.0, 0.0, 2.0, 0.0])
    filled, keep = labels_lib.fill_missing(labels)
    np.testing.assert_array_equal(filled, masked["a"])
    np.testing.assert_array_equal(keep, np.asarray(weights["a"]) > 0)
    assert not bool(labels_lib.has_labels(np.full((2, 1), np.nan)))
    assert bool(labels_lib.has_labels(labels))
    assert not bool(labels_lib.has_labels(labels, np.zeros(4)))


def test_a_task_named_with_an_underscore_works_in_the_diagnostics():
    # Plain Keras accepts an output called `_a`; so do the diagnostics, whose
    # per-task losses are built under Keras's name scope (the task core).
    names = ("_a", "b", "c")
    model = _model(names)
    x, y = _batch(names, size=16)
    model.fit(x, y, epochs=1, verbose=0)
    conflict = tag_keras.diagnostics.gradient_conflict(
        _model(names), (x, y), batch_size=8)
    assert {"_a", "b"} <= set(conflict.columns) | set(conflict.index)


def _imported_names(path):
    """Every dotted name the file at `path` imports (`a.b` and, for `from
    a.b import c`, also `a.b.c`)."""
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def _imported_packages(package):
    """The `tag_keras` subpackages and modules `package`'s files import."""
    import pathlib

    root = pathlib.Path(tag_keras.__file__).parent / package
    found = set()
    for path in root.rglob("*.py"):
        found.update(n.split(".")[1] for n in _imported_names(path)
                     if n.startswith("tag_keras.") and n.count(".") >= 1)
    return found - {package}


def test_the_task_core_sits_below_every_package_that_uses_it():
    assert _imported_packages("tasks") <= {"_data", "_distribute",
                                           "_keras_private", "_tensorflow"}
    for user in ("measure", "diagnostics", "mtl", "train"):
        assert "tasks" in _imported_packages(user), user
    # The training methods name `TaskGradients` from the core, not from
    # the package that drives them.
    assert "measure" not in _imported_packages("mtl")
    assert "measure" not in _imported_packages("diagnostics")
    # Per-example evaluation is task core: training decides with it.
    assert "diagnostics" not in _imported_packages("train")


def test_no_package_imports_another_packages_private_module():
    import pathlib

    root = pathlib.Path(tag_keras.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        package = path.relative_to(root).parts[0]
        for name in _imported_names(path):
            parts = name.split(".")
            if (len(parts) >= 3 and parts[0] == "tag_keras"
                    and parts[1] != package and parts[2].startswith("_")):
                found.append(f"{path.relative_to(root)}: {name}")
    assert found == []
