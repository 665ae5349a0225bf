"""SVD task re-weighting in `fit` (Wu, Zhang and Ré, ICLR 2020)."""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np
from keras import ops

from tag_keras import _compat
from tag_keras import _data
from tag_keras.mtl.base import TrainingMethod
from tag_keras.mtl.base import representation_tensor


@keras.saving.register_keras_serializable(package="tag_keras")
class SVDTaskWeights(TrainingMethod):
    """Weights each task's loss by Algorithm 2, recomputed during `fit`.

    At the start of epochs 0, n, 2n, … (`every_n_epochs` = n) it reads up
    to `max_samples` examples of `data`, computes the shared
    representation (see `representation_layer`) in inference mode, and sets each task's
    weight to `tag_keras.transfer.svd_task_weights(representation,
    labels, rank)` divided by their mean (so the weights average one and
    the total loss keeps its scale). Task i's loss is multiplied by its
    weight. The weights are non-trainable variables of the model: saved
    with it and restored by `BackupAndRestore`; a loaded model keeps them
    fixed until it is given `data` again (data is not saved).

    The representation is where the paper computes θ_i = Xᵀy_i: the input
    of the task heads, i.e. the output of the shared module, where tasks
    whose labels the shared features cannot explain (label noise) have a
    θ_i outside the span the other tasks share. By default it is the one
    tensor every output layer reads; name a layer with
    `representation_layer=` for
    models whose heads read different tensors.

    ```python
    model = tag_keras.TaskAffinityModel(
        inputs, outputs,
        training_method=tag_keras.mtl.SVDTaskWeights(rank=2,
                                                     data=(x, y)))
    ```

    Args:
        rank: r of Algorithm 2, from 1 to the number of tasks.
        data: `(x, y)` arrays, a batched `tf.data.Dataset` or a PyDataset
            with labels for the tasks (NaN = missing); None keeps the
            current weights.
        every_n_epochs: Recompute every this many epochs.
        representation_layer: None for the heads' common input, or the
            name of the layer whose output is the representation (as
            `MGDA`'s; `layer=` in version 0.2).
        max_samples: Examples read per recomputation.
        **kwargs: Layer arguments such as `name`.
    """

    def __init__(
        self,
        rank: int = 1,
        data: Any = None,
        every_n_epochs: int = 1,
        representation_layer: str | None = None,
        max_samples: int = 2048,
        **kwargs: Any,
    ) -> None:
        _compat.refuse_renamed_argument("SVDTaskWeights", kwargs)
        super().__init__(**kwargs)
        for name, value in (
            ("rank", rank),
            ("every_n_epochs", every_n_epochs),
            ("max_samples", max_samples),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or value < 1
            ):
                raise ValueError(
                    f"`{name}` must be a positive integer. "
                    f"Received: {name}={value!r}."
                )
        if data is not None:
            _data.check_data(data)
        self.rank, self.every_n_epochs = int(rank), int(every_n_epochs)
        self.representation_layer = representation_layer
        self.max_samples = int(max_samples)
        self._holder = _Untracked(data)

    def build_tasks(self, task_names):
        super().build_tasks(task_names)
        if self.rank > len(self.task_names):
            raise ValueError(
                f"`rank` must be at most the number of tasks "
                f"({len(self.task_names)}). Received: rank={self.rank}."
            )
        self.task_weights_variable = self.add_weight(
            shape=(len(self.task_names),),
            initializer="ones",
            trainable=False,
            name="svd_task_weights",
        )
        self.epochs_seen = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="int64",
            trainable=False,
            name="epochs_seen",
        )

    def attach(self, model):
        self._holder.model = weakref.ref(model)
        self._holder.features = None

    def weight_losses(self, losses):
        weights = ops.cast(self.task_weights_variable, "float32")
        return {
            task: losses[task] * ops.cast(weights[k], losses[task].dtype)
            for k, task in enumerate(self.task_names)
        }

    def loss_multipliers(self):
        return self.task_weights_variable.value

    def task_weights(self) -> dict[str, float]:
        """`{task: weight}`, the current multipliers."""
        return dict(
            zip(
                self.task_names,
                np.asarray(self.task_weights_variable).tolist(),
            )
        )

    def on_epoch_begin(self):
        epoch = int(self.epochs_seen.numpy())
        self.epochs_seen.assign(epoch + 1)
        if epoch % self.every_n_epochs or self._holder.data is None:
            return
        model = self._holder.model() if self._holder.model else None
        if model is None:
            return
        self.task_weights_variable.assign(self.compute(model))

    def compute(self, model: keras.Model, data: Any = None) -> np.ndarray:
        """`[n]` normalised weights from `data` (default: the given data)."""
        from tag_keras.transfer import svd_task_weights

        data = self._holder.data if data is None else data
        features = self._features(model)
        x, labels = _data.examples(
            data, list(self.task_names), self.max_samples
        )
        z = _data.map_batches(lambda part: features(part, training=False), x)
        x = z.reshape(len(z), -1)
        alphas = np.array(
            list(svd_task_weights(x, labels, self.rank).values())
        )
        return alphas / alphas.mean()

    def _features(self, model):
        if self._holder.features is None:
            self._holder.features = keras.Model(
                model.input,
                representation_tensor(model, self.representation_layer),
            )
        return self._holder.features

    def get_config(self):
        return {
            **super().get_config(),
            "rank": self.rank,
            "every_n_epochs": self.every_n_epochs,
            "representation_layer": self.representation_layer,
            "max_samples": self.max_samples,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**_compat.renamed_config("SVDTaskWeights", config))


class _Untracked:
    """Holds what Keras must not track or save: the data and the model."""

    def __init__(self, data: Any):
        self.data, self.model, self.features = data, None, None
