"""Covariance alignment (Wu, Zhang and Ré, ICLR 2020, Algorithm 1)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from tag_keras import _keras_private


@keras.saving.register_keras_serializable(package="tag_keras")
class CovarianceAlignment(keras.layers.Layer):
    """A task's alignment matrix R (d × d, starting as the identity).

    Put one between each task's input embedding and the shared module,
    `z_i = x_i R_i`, so that tasks whose inputs are distributed differently
    (rotated, rescaled) can be brought into one space before they share
    weights; train with `AlignmentSchedule`. At initialisation the layer
    is the identity: a model's outputs are unchanged by inserting it.

    ```python
    x_a, x_b = keras.Input((d,)), keras.Input((d,))
    shared = keras.Sequential([keras.layers.Dense(h, activation="relu")],
                              name="shared")
    z_a = shared(tag_keras.transfer.CovarianceAlignment(name="align_a")(x_a))
    z_b = shared(tag_keras.transfer.CovarianceAlignment(name="align_b")(x_b))
    model = keras.Model([x_a, x_b], {"a": head_a(z_a), "b": head_b(z_b)})
    ```

    Keyword arguments (such as `name`) go to `keras.layers.Layer`.
    """

    def build(self, input_shape):
        _keras_private.check_backend(what="CovarianceAlignment")
        size = input_shape[-1]
        if size is None:
            raise ValueError(
                "CovarianceAlignment needs a known last "
                f"dimension. Received: input_shape="
                f"{input_shape}."
            )
        self.kernel = self.add_weight(
            shape=(size, size), initializer="identity", name="kernel"
        )

    def call(self, inputs):
        return ops.matmul(inputs, self.kernel)

    def compute_output_shape(self, input_shape):
        return input_shape


class AlignmentSchedule(keras.callbacks.Callback):
    """Algorithm 1's alternation, epoch by epoch, inside `fit`.

    Each period of `period` epochs starts with `align_epochs` alignment
    epochs, in which the shared layers are frozen and the alignment
    layers train (with everything else, e.g. the task heads); in the
    other epochs the alignment layers are frozen and the shared layers
    train with the heads. Layers named in neither list keep their
    `trainable` setting. Each phase's train function is traced once and
    swapped in at each switch (the optimizer keeps its state for every
    variable).

    Args:
        alignment_layers: Names of the `CovarianceAlignment` layers.
        shared_layers: Names of the shared module's layers.
        period: Epochs per alternation.
        align_epochs: Alignment epochs at the start of each period
            (from 0 to `period`).
    """

    def __init__(
        self,
        alignment_layers: Sequence[str],
        shared_layers: Sequence[str],
        period: int = 2,
        align_epochs: int = 1,
    ):
        _keras_private.check_backend(what="AlignmentSchedule")
        super().__init__()
        if not 1 <= period or not 0 <= align_epochs <= period:
            raise ValueError(
                "`period` must be >= 1 and `align_epochs` between 0 and "
                f"`period`. Received: period={period}, "
                f"align_epochs={align_epochs}."
            )
        self.alignment_layers = list(alignment_layers)
        self.shared_layers = list(shared_layers)
        self.period, self.align_epochs = period, align_epochs
        self.phases: list[str] = []
        self._functions: dict = {}

    def phase(self, epoch: int) -> str:
        """`"align"` or `"shared"`: what trains in `epoch`."""
        return "align" if epoch % self.period < self.align_epochs else "shared"

    def on_train_begin(self, logs=None):
        names = [layer.name for layer in self.model.layers]
        unknown = [
            n
            for n in self.alignment_layers + self.shared_layers
            if n not in names
        ]
        if unknown:
            raise ValueError(
                f"AlignmentSchedule: the model has no layers "
                f"{unknown}. Its layers: {names}."
            )
        for name in self.alignment_layers + self.shared_layers:
            self.model.get_layer(name).trainable = True
        # The optimizer must know every variable either phase trains.
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.phases, self._functions = [], {}

    def on_epoch_begin(self, epoch, logs=None):
        phase = self.phase(epoch)
        if self.phases and self.phases[-1] == phase:
            self.phases.append(phase)
            return
        for name in self.alignment_layers:
            self.model.get_layer(name).trainable = phase == "align"
        for name in self.shared_layers:
            self.model.get_layer(name).trainable = phase == "shared"
        # Each phase's step is traced once (its variable list is fixed
        # at tracing) and reused at every later switch.
        if phase in self._functions:
            self.model.train_function = self._functions[phase]
        else:
            # Keras's `make_train_function` sets `train_function` (and
            # may return None).
            self.model.make_train_function(force=True)
            self._functions[phase] = self.model.train_function
        self.phases.append(phase)

    def on_train_end(self, logs=None):
        for name in self.alignment_layers + self.shared_layers:
            self.model.get_layer(name).trainable = True
