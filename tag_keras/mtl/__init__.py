"""Multi-task training methods: `TaskAffinityModel(training_method=...)`.

- `UncertaintyWeights`: learned per-task loss weights (Kendall et al.).
- `GradNorm`: task weights that balance gradient norms (Chen et al.).
- `PCGrad`: projecting conflicting gradients (Yu et al.), optionally on
  uncertainty-weighted losses.
- `ITMTL`: picks each step's shared update among candidate gradients by
  lookahead affinity (or its first-order approximation); `CandidateLogger`
  writes which candidate won.

One method per file, one protocol (`base.TrainingMethod`): `weight_losses`,
`combine(gradients, context)` on the step's `TaskGradients`, `update`.
Each works with `model.fit`, alone or while the model measures affinity.

May import TensorFlow, Keras and the leaf modules `tag_keras._distribute`
and `tag_keras._keras_private`; never `tag_keras.measure` (which drives the
methods) or `tag_keras.select`.
"""

from tag_keras.mtl.base import StepContext
from tag_keras.mtl.base import TrainingMethod
from tag_keras.mtl.base import TrainingStrategy
from tag_keras.mtl.gradnorm import GradNorm
from tag_keras.mtl.it_mtl import CandidateLogger
from tag_keras.mtl.it_mtl import ITMTL
from tag_keras.mtl.pcgrad import PCGrad
from tag_keras.mtl.uncertainty import UncertaintyWeights

__all__ = [
    "CandidateLogger", "GradNorm", "ITMTL", "PCGrad", "StepContext",
    "TrainingMethod", "TrainingStrategy", "UncertaintyWeights",
]
