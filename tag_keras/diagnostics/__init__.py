"""Optimisation-trajectory diagnostics (Mueller, Dredze & Andrews).

Measures of each task's optimisation on any compiled Keras model whose
outputs are a dict keyed by task (a `TaskAffinityModel`, a multi-output
`keras.Model` or a one-task model), with data as arrays, a batched
`tf.data.Dataset` or a `keras.utils.PyDataset`. None of them writes the
model's weights, BatchNorm statistics or optimizer state: every forward
pass is in inference mode, and moved parameters go through
`stateless_call`. Task k's parameters θ_k are the trainable variables its
loss depends on (the shared weights and its head); its loss is the
compiled one without `loss_weights`; examples whose label is NaN are not
in its training set S_k.

* `gradient_conflict`: cosine of each task's shared gradient with the
  uniform multi-task gradient, conflict rate, norm ratio.
* `sharpness`: elementwise-adaptive worst-case ℓ∞ sharpness.
* `fisher_trace`: trace of the Fisher information (exact for
  classifiers).
* `gradient_coherence`: trace of the per-example gradient covariance.
* `tag_keras.callbacks.TrajectoryLogger` records all of them (and loss,
  error) every n epochs, to `trajectory.csv` and TensorBoard.
* `generalization_gap`, `summarize`: two trajectories compared at matched
  training loss; the paper's per-run summaries.
* `loss_along_updates`, `loss_surface`: loss landscapes around the weights
  (the transference paper, section 4.2).

Under `tf.distribute` the measures run on the chief's copy of the
variables (the `TrajectoryLogger` measures on the chief only).

References:
    Mueller, Dredze and Andrews, "Can Optimization Trajectories Explain
    Multi-Task Transfer?", TMLR 2024.
"""

from tag_keras.diagnostics.conflict import gradient_conflict
from tag_keras.diagnostics.gap import generalization_gap
from tag_keras.diagnostics.gap import read_trajectory
from tag_keras.diagnostics.gap import summarize
from tag_keras.diagnostics.landscape import loss_along_updates
from tag_keras.diagnostics.landscape import loss_surface
from tag_keras.diagnostics.per_example import fisher_trace
from tag_keras.diagnostics.per_example import gradient_coherence
from tag_keras.diagnostics.trajectory import MEASURES
from tag_keras.diagnostics.worst_case import sharpness

__all__ = [
    "MEASURES",
    "fisher_trace",
    "generalization_gap",
    "gradient_coherence",
    "gradient_conflict",
    "loss_along_updates",
    "loss_surface",
    "read_trajectory",
    "sharpness",
    "summarize",
]
