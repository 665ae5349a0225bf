"""The task core: what a task is, for every other package.

A task is one output of a compiled model with its own loss. One module per
part of that, each the only implementation in the package:

- `names`: task names, checked once (distinct strings; none holding the
  separator of group labels where groups are written).
- `losses`: each task's loss exactly as `compile(loss=..., loss_weights=...)`
  defines it, reduced (`TaskLosses`) or per example (`example_losses`),
  under Keras's name scope (a task called `_a` works as in plain Keras).
- `labels`: missing labels (NaN) masked, in a traced step and in NumPy.
- `shared`: which trainable variables the tasks share, found from which
  variables each task's loss depends on.
- `affinity`: the affinity formulas (lookahead, first-order, cosine),
  which the measurement's estimators and IT-MTL's scores share.
- `view`: `TaskView`, a compiled model seen one task at a time, read-only
  (each task's parameters, per-example losses, inference-mode outputs at
  moved weights), and `heads`: which heads are classifiers or
  multi-label, and the loss of every label they can take.
- `evaluation`: each task's loss and error per example (what
  `tag_keras.train` decides on and the diagnostics report).
- `gradients`: `TaskGradients`, each task's dense gradient of the shared
  variables: the one value the affinity estimators, the lookahead and every
  `tag_keras.mtl` training method read.

`tag_keras.measure`, `tag_keras.diagnostics`, `tag_keras.mtl` and
`tag_keras.train` import from here; this package imports only TensorFlow,
Keras, NumPy and the leaf modules `tag_keras._data`, `tag_keras._distribute`
and `tag_keras._keras_private`.
"""

from tag_keras.tasks.gradients import TaskGradients
from tag_keras.tasks.losses import TaskLosses

__all__ = ["TaskGradients", "TaskLosses"]
