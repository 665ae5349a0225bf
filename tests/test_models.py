"""Model builders: encoder structure, per-task heads, one training step."""

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

import tag_keras
from experiments import data
from experiments.lib import models
from experiments.data import base


def _images(shape, tasks=("a", "b"), classes=(2, 3), n=6):
    """A tiny image dataset (random pixels, random labels) for shapes."""
    rng = np.random.default_rng(0)
    x = rng.random((n, *shape))
    num_classes = dict(zip(tasks, classes, strict=True))
    labels = {t: rng.integers(0, c, n) for t, c in num_classes.items()}
    split = base.from_arrays(x, labels)
    return base.MultiTaskData("tiny", tuple(tasks), num_classes, tuple(shape),
                              split, split, split, "tiny")


def _planted():
    return data.load_dataset("planted", num_train=12, num_validation=4,
                             num_test=4, num_features=5)


def _count(model, layer_type):
    return sum(isinstance(layer, layer_type) for layer in model.layers)


@pytest.mark.parametrize("encoder, shape", [
    ("celeba", (8, 8, 3)), ("lenet", (8, 12, 1)), ("mlp", (5,)),
])
def test_outputs_are_logits_keyed_by_task(encoder, shape):
    d = _images(shape)
    model = models.build_model(d, encoder=encoder, width=4)
    outputs = model(np.zeros((3, *shape), "float32"))
    assert list(outputs) == ["a", "b"]
    assert tuple(outputs["a"].shape) == (3, 2)
    assert tuple(outputs["b"].shape) == (3, 3)
    for task in d.tasks:
        head = model.get_layer(task)
        assert isinstance(head, keras.layers.Dense)
        assert head.units == d.num_classes[task] and head.activation is (
            keras.activations.linear)


def test_celeba_encoder_is_the_papers():
    d = _images((64, 64, 3), tasks=("Smiling",), classes=(2,))
    model = models.build_model(d, encoder="celeba")
    convs = [x for x in model.layers if isinstance(x, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.use_bias) for c in convs] == [
        (64, (3, 3), False)] * 3
    assert _count(model, keras.layers.BatchNormalization) == 3
    assert _count(model, keras.layers.Add) == 1
    pool = model.get_layer("shared_max_pool")
    assert (pool.pool_size, pool.strides) == ((3, 3), (2, 2))
    assert model.get_layer("shared_avg_pool").pool_size == (2, 2)
    # Residual: the block's output adds the max-pooled input to the block.
    add = model.get_layer("shared_block_add")
    sources = [t._keras_history.operation.name
               for t in add._inbound_nodes[0].input_tensors]
    assert sources == ["shared_block_bn2", "shared_max_pool"]
    # 64 -> max pool 31 -> average pool 15: 15 * 15 * 64 features.
    assert model.get_layer("shared_flatten").output.shape == (None, 14400)
    assert model.get_layer("Smiling").output.shape == (None, 2)


def test_lenet_and_mlp_layers():
    lenet = models.build_model(_images((8, 8, 1)), encoder="lenet", width=3)
    assert [c.filters for c in lenet.layers
            if isinstance(c, keras.layers.Conv2D)] == [3, 6]
    assert lenet.get_layer("shared_dense").units == 12
    assert _count(lenet, keras.layers.MaxPooling2D) == 2
    mlp = models.build_model(_planted(), hidden_units=(7, 5, 3))
    assert [x.units for x in mlp.layers if x.name.startswith("shared_")] == [
        7, 5, 3]
    assert len(mlp.outputs) == 7


def test_default_encoder_per_dataset_and_task_subset():
    assert models.DEFAULT_ENCODERS == {
        "celeba": "celeba", "digits": "lenet", "multi_digits": "lenet",
        "planted": "mlp", "mnist": "lenet", "multi_mnist": "lenet"}
    planted = _planted()
    model = models.build_model(planted, tasks=["c0_t1", "noise_0"])
    assert list(model.output) == ["c0_t1", "noise_0"]
    assert model.get_layer("shared_dense1").units == 32
    kwargs = models.compile_kwargs(planted, tasks=["c0_t1", "noise_0"])
    assert list(kwargs["loss"]) == list(kwargs["metrics"]) == [
        "c0_t1", "noise_0"]


def test_bad_arguments():
    d = _images((8, 8, 1))
    with pytest.raises(ValueError, match="Received: encoder='resnet50'"):
        models.build_model(d, encoder="resnet50")
    with pytest.raises(ValueError, match="Received: hidden_units="):
        models.build_model(d, encoder="lenet", hidden_units=(4,))
    with pytest.raises(ValueError, match="Received: width=0"):
        models.build_model(d, encoder="lenet", width=0)
    with pytest.raises(ValueError, match=r"Received: tasks=\['c'\]"):
        models.build_model(d, tasks=["c"])


def test_task_affinity_model_with_model_kwargs():
    model = models.build_model(
        _planted(), width=4, model_cls=tag_keras.TaskAffinityModel,
        affinity_every_n_steps=1, name="planted_mtl")
    assert isinstance(model, tag_keras.TaskAffinityModel)
    assert model.name == "planted_mtl"


def _fit_one_step(d, **build_kwargs):
    keras.utils.set_random_seed(0)
    model = models.build_model(d, model_cls=tag_keras.TaskAffinityModel,
                               affinity_every_n_steps=1, **build_kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  **models.compile_kwargs(d))
    before = [w.numpy().copy() for w in model.trainable_weights]
    batch = d.split("train").take(4).batch(4)
    history = model.fit(batch, epochs=1, verbose=0, shuffle=False).history
    after = [w.numpy() for w in model.trainable_weights]
    assert any(not np.array_equal(b, a)
               for b, a in zip(before, after, strict=True))
    for task in d.tasks:
        assert 0 <= history[f"{task}_accuracy"][0] <= 1
        assert np.isfinite(history[f"{task}_loss"][0])
    affinity = model.affinity()
    assert list(affinity.index) == list(d.tasks)
    assert np.isfinite(affinity.to_numpy()).all()
    return model


@pytest.mark.parametrize("name, tasks", [
    ("digits", ["is_even", "has_closed_loop", "digit"]),
    ("multi_digits", None),
])
def test_fit_one_step_digit_sets(name, tasks):
    _fit_one_step(data.load_dataset(name, tasks=tasks), width=2)


def test_fit_one_step_planted():
    d = _planted().select_tasks(["c0_t0", "c1_t0", "noise_0"])
    _fit_one_step(d, hidden_units=(4,))


def test_fit_one_step_celeba_mock_data():
    with tfds.testing.mock_data(num_examples=4):
        d = data.load_dataset("celeba", tasks=["Male", "Goatee"],
                              image_size=8)
        _fit_one_step(d, width=2)


def test_accuracy_metric_is_argmax_accuracy():
    d = _planted()
    model = models.build_model(d, hidden_units=(4,))
    model.compile(optimizer="sgd", **models.compile_kwargs(d))
    x, labels = next(iter(d.batches("test", 4)))
    result = model.evaluate(x, labels, verbose=0, return_dict=True)
    predicted = model.predict(x, verbose=0)
    for task in d.tasks:
        expected = np.mean(predicted[task].argmax(-1) == labels[task])
        assert result[f"{task}_accuracy"] == pytest.approx(expected)
