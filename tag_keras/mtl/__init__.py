"""Multi-task training methods: `TaskAffinityModel(training_method=...)`.

- `UncertaintyWeights`: learned per-task loss weights (Kendall et al.).
- `GradNorm`: task weights that balance gradient norms (Chen et al.).
- `PCGrad`: projecting conflicting gradients (Yu et al.), optionally on
  uncertainty-weighted losses.
- `MGDA`: the min-norm point of the task gradients' convex hull (Sener &
  Koltun), on the shared parameters.
- `SVDTaskWeights`: task-loss weights from Algorithm 2 of Wu et al.
  (`tag_keras.transfer.svd_task_weights`), recomputed every n epochs.
- `ITMTL`: picks each step's shared update among candidate gradients by
  lookahead affinity (or its first-order approximation);
  `tag_keras.callbacks.CandidateLogger` writes which candidate won.

One method per file, one protocol (`base.TrainingMethod`): `weight_losses`,
`combine(gradients, context)` on the step's `TaskGradients`, `update`.
Each works with `model.fit`, alone or while the model measures affinity.

May import TensorFlow, Keras, the task core `tag_keras.tasks` (whose
`TaskGradients` every method combines), the leaf modules
`tag_keras._distribute`, `tag_keras._keras_private` and `tag_keras._data`,
and `tag_keras.transfer`;
never `tag_keras.measure` (which drives the methods) or `tag_keras.select`.
"""

from tag_keras.mtl.base import StepContext
from tag_keras.mtl.base import TrainingMethod
from tag_keras.mtl.gradnorm import GradNorm
from tag_keras.mtl.it_mtl import ITMTL
from tag_keras.mtl.mgda import MGDA
from tag_keras.mtl.pcgrad import PCGrad
from tag_keras.mtl.svd_weights import SVDTaskWeights
from tag_keras.mtl.uncertainty import UncertaintyWeights

__all__ = [
    "ITMTL",
    "MGDA",
    "GradNorm",
    "PCGrad",
    "SVDTaskWeights",
    "StepContext",
    "TrainingMethod",
    "UncertaintyWeights",
]
