"""Measurement: per-task gradients in a Keras step, affinity accumulated.

The data path, one module each (the task core `tag_keras.tasks` gives the
per-task losses, the shared variables, NaN masking and `TaskGradients`):

    batch -> `step` (the train step: per-task losses, one backward pass
             per task, `tag_keras.tasks.TaskGradients`)
          -> `estimators` (one per affinity method; the `lookahead` makes
             the optimizer's real step on copies; `target` is the batch
             measured on, `held_out` the validation batches)
          -> `meter` -> `state` (`AffinityState`: sums, squares, counts;
             `sources`: groups of tasks stepped on together, their
             `GroupAffinityState` and `group_affinity()` table)
          -> `epochs` (the per-epoch matrix) -> `tag_keras.callbacks`.

`model.TaskAffinityModel` ties them into `model.fit`;
`custom_loop.AffinityMeter` gives the same to a hand-written loop, whose
forward pass `forward.ForwardPass` replays at moved weights.

May import TensorFlow, Keras, `tag_keras.tasks`, `tag_keras.mtl` (the
training methods the step drives) and the leaf modules
`tag_keras._distribute` and `tag_keras._keras_private`; never
`tag_keras.select`.
"""

from tag_keras.measure.affinity import AFFINITY_METHODS
from tag_keras.measure.custom_loop import AffinityMeter
from tag_keras.measure.estimators import AffinityEstimator
from tag_keras.measure.estimators import EstimatorInputs
from tag_keras.measure.estimators import affinity_methods
from tag_keras.measure.estimators import register_affinity_method
from tag_keras.measure.forward import ForwardPass
from tag_keras.measure.meter import Meter
from tag_keras.measure.model import TaskAffinityModel
from tag_keras.measure.state import AffinityState

__all__ = [
    "AFFINITY_METHODS",
    "AffinityEstimator",
    "AffinityMeter",
    "AffinityState",
    "EstimatorInputs",
    "ForwardPass",
    "Meter",
    "TaskAffinityModel",
    "affinity_methods",
    "register_affinity_method",
]
