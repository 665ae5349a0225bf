"""The package's Keras callbacks, one file each.

* `AffinityLogger` (`affinity_logger`): the affinity matrices of a
  `TaskAffinityModel` or `AffinityMeter` as CSV files, TensorBoard events
  and a figure.
* `TrajectoryLogger` (`trajectory_logger`): every task's optimisation-
  trajectory measures (`tag_keras.diagnostics`) every n epochs.
* `CandidateLogger` (`candidate_logger`): how often each IT-MTL candidate
  won (`tag_keras.mtl.ITMTL`).

May import `tag_keras.measure`, `tag_keras.diagnostics`, `tag_keras.mtl`
and the leaf modules; nothing imports this package but the top level.
"""

from tag_keras.callbacks.affinity_logger import AffinityLogger
from tag_keras.callbacks.candidate_logger import CandidateLogger
from tag_keras.callbacks.trajectory_logger import TrajectoryLogger

__all__ = ["AffinityLogger", "CandidateLogger", "TrajectoryLogger"]
