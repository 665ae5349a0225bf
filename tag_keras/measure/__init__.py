"""Measurement: per-task gradients in a Keras step, affinity accumulated.

The data path, one module each:

    batch -> `losses` (per-task losses, as `compile` defines them)
          -> `step` (the train step; `shared` finds the shared variables)
          -> `gradients` (`TaskGradients`: dense per-task shared gradients)
          -> `estimators` (one per affinity method; the `lookahead` makes
             the optimizer's real step on copies; `target` is the batch
             measured on, `held_out` the validation batches)
          -> `meter` -> `state` (`AffinityState`: sums, squares, counts;
             `sources`: groups of tasks stepped on together, their
             `GroupAffinityState` and `group_affinity()` table)
          -> `epochs` (the per-epoch matrix) -> `tag_keras.callbacks`.

`model.TaskAffinityModel` ties them into `model.fit`;
`custom_loop.AffinityMeter` gives the same to a hand-written loop.

May import TensorFlow, Keras, `tag_keras.mtl` (the training methods the
step drives) and the leaf modules `tag_keras._distribute` and
`tag_keras._keras_private`; never `tag_keras.select`.
"""

from tag_keras.measure.affinity import METHODS
from tag_keras.measure.custom_loop import AffinityMeter
from tag_keras.measure.gradients import TaskGradients
from tag_keras.measure.meter import Meter
from tag_keras.measure.model import TaskAffinityModel
from tag_keras.measure.state import AffinityState

__all__ = ["AffinityMeter", "AffinityState", "METHODS", "Meter",
           "TaskAffinityModel", "TaskGradients"]
