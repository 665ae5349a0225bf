"""Hard-parameter-sharing models for the experiment datasets.

A shared encoder and one head per task: `Dense(num_classes[task])` named
after the task, producing logits. `build_model` returns
`model_cls(inputs=..., outputs={task: logits}, **model_kwargs)`, so the
same builder gives a plain `keras.Model` or a `tag_keras.TaskAffinityModel`;
`compile_kwargs` gives the matching per-task losses and accuracy metrics
(error = 1 - accuracy).

Encoders (`ENCODERS`):

* `"celeba"`: the TAG paper's CelebA encoder, loosely ResNet-18: conv
  3×3/`width` without bias + BatchNorm + ReLU, max-pool 3×3 stride 2, one
  residual block (two 3×3/`width` convs with BatchNorm, identity shortcut,
  ReLU after the sum), 2×2 average pool, flatten. `width` 64 in the paper.
* `"lenet"`: LeNet-like, for the 8×8 digit sets: conv 3×3/`width` + ReLU,
  max-pool 2, conv 3×3/`2·width` + ReLU, max-pool 2, flatten, dense
  `4·width` + ReLU.
* `"mlp"`: dense ReLU layers of `hidden_units` (default two of `width`),
  for the planted tasks.

Example:

>>> import tag_keras
>>> from experiments import data
from experiments.lib import models
>>> digits = data.load_dataset("digits")
>>> model = models.build_model(digits, model_cls=tag_keras.TaskAffinityModel,
...                            affinity_every_n_steps=10)
>>> model.compile(optimizer="sgd", **models.compile_kwargs(digits))
"""

import keras

from experiments.data import base

ENCODERS = ("celeba", "lenet", "mlp")
# Dataset name -> its encoder.
DEFAULT_ENCODERS = {
    "celeba": "celeba",
    "digits": "lenet",
    "multi_digits": "lenet",
    "planted": "mlp",
    "mnist": "lenet",
    "multi_mnist": "lenet",
}
DEFAULT_WIDTHS = {"celeba": 64, "lenet": 16, "mlp": 32}

_layers = keras.layers


def celeba_encoder(x, *, width=64):
    """The paper's CelebA encoder applied to the tensor `x` (NHWC)."""
    x = _layers.Conv2D(width, 3, padding="same", use_bias=False,
                       name="shared_conv")(x)
    x = _layers.BatchNormalization(name="shared_bn")(x)
    x = _layers.ReLU(name="shared_relu")(x)
    shortcut = _layers.MaxPooling2D(3, strides=2, name="shared_max_pool")(x)
    x = shortcut
    for i in (1, 2):
        x = _layers.Conv2D(width, 3, padding="same", use_bias=False,
                           name=f"shared_block_conv{i}")(x)
        x = _layers.BatchNormalization(name=f"shared_block_bn{i}")(x)
        if i == 1:
            x = _layers.ReLU(name="shared_block_relu1")(x)
    x = _layers.Add(name="shared_block_add")([x, shortcut])
    x = _layers.ReLU(name="shared_block_relu2")(x)
    x = _layers.AveragePooling2D(2, name="shared_avg_pool")(x)
    return _layers.Flatten(name="shared_flatten")(x)


def lenet_encoder(x, *, width=16):
    """A LeNet-like encoder for small grey images, applied to `x`."""
    x = _layers.Conv2D(width, 3, padding="same", activation="relu",
                       name="shared_conv1")(x)
    x = _layers.MaxPooling2D(2, padding="same", name="shared_pool1")(x)
    x = _layers.Conv2D(2 * width, 3, padding="same", activation="relu",
                       name="shared_conv2")(x)
    x = _layers.MaxPooling2D(2, padding="same", name="shared_pool2")(x)
    x = _layers.Flatten(name="shared_flatten")(x)
    return _layers.Dense(4 * width, activation="relu",
                         name="shared_dense")(x)


def mlp_encoder(x, *, hidden_units=(32, 32)):
    """Dense ReLU layers of `hidden_units`, applied to `x`."""
    if isinstance(x.shape, tuple) and len(x.shape) > 2:
        x = _layers.Flatten(name="shared_flatten")(x)
    for i, units in enumerate(hidden_units, start=1):
        x = _layers.Dense(units, activation="relu",
                          name=f"shared_dense{i}")(x)
    return x


def build_inputs_outputs(data, *, tasks=None, encoder=None, width=None,
                         hidden_units=None):
    """The model's input and its dict of per-task logits.

    Args:
        data: A `MultiTaskData` (its input shape, tasks and classes are
            used; its datasets are not touched).
        tasks: Tasks to give heads to (e.g. one task group); `None` for all
            of `data.tasks`.
        encoder: One of `ENCODERS`; `None` for the dataset's default
            (`DEFAULT_ENCODERS`).
        width: Encoder width (channels of `"celeba"`, base channels of
            `"lenet"`, units of each `"mlp"` layer); `None` for
            `DEFAULT_WIDTHS`.
        hidden_units: `"mlp"` only: the units of each hidden layer,
            overriding `width`.

    Returns:
        `(inputs, outputs)`: a `keras.Input` and `{task: logits}` with
        logits of shape `(batch, num_classes[task])`.
    """
    tasks = base.resolve_tasks(tasks, data.tasks, data.tasks)
    if encoder is None:
        encoder = DEFAULT_ENCODERS.get(data.name, "mlp")
    if encoder not in ENCODERS:
        raise ValueError(
            f"`encoder` must be one of {list(ENCODERS)}. Received: "
            f"encoder={encoder!r}"
        )
    width = DEFAULT_WIDTHS[encoder] if width is None else width
    if width < 1:
        raise ValueError(f"`width` must be at least 1. Received: width={width}")
    if hidden_units is not None and encoder != "mlp":
        raise ValueError(
            "`hidden_units` applies to the 'mlp' encoder only. Received: "
            f"hidden_units={hidden_units}, encoder={encoder!r}"
        )
    inputs = keras.Input(data.input_shape, name="inputs")
    if encoder == "celeba":
        features = celeba_encoder(inputs, width=width)
    elif encoder == "lenet":
        features = lenet_encoder(inputs, width=width)
    else:
        units = (width, width) if hidden_units is None else hidden_units
        features = mlp_encoder(inputs, hidden_units=tuple(units))
    outputs = {
        task: _layers.Dense(data.num_classes[task], name=task)(features)
        for task in tasks
    }
    return inputs, outputs


def build_model(data, *, tasks=None, encoder=None, width=None,
                hidden_units=None, model_cls=keras.Model, **model_kwargs):
    """`model_cls(inputs=..., outputs={task: logits}, **model_kwargs)`.

    Args:
        data: A `MultiTaskData`.
        tasks: Tasks to give heads to; `None` for all of `data.tasks`.
        encoder: One of `ENCODERS`; `None` for the dataset's default.
        width: Encoder width (see `build_inputs_outputs`).
        hidden_units: Hidden layer sizes of the `"mlp"` encoder.
        model_cls: `keras.Model` or a subclass that is built like a
            functional model, e.g. `tag_keras.TaskAffinityModel`.
        **model_kwargs: Passed to `model_cls`, e.g. `name` or
            `affinity_every_n_steps`.
    """
    inputs, outputs = build_inputs_outputs(
        data, tasks=tasks, encoder=encoder, width=width,
        hidden_units=hidden_units,
    )
    return model_cls(inputs=inputs, outputs=outputs, **model_kwargs)


def compile_kwargs(data, *, tasks=None):
    """Per-task `loss` and `metrics` for `model.compile(**...)`.

    Softmax cross-entropy on the logits and accuracy (metric name
    `"accuracy"`, so Keras logs `{task}_accuracy`) for every task.
    """
    tasks = base.resolve_tasks(tasks, data.tasks, data.tasks)
    return {
        "loss": {
            t: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            for t in tasks
        },
        "metrics": {
            t: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
            for t in tasks
        },
    }
