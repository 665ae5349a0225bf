"""Information-transfer tools (Wu, Zhang and Ré, ICLR 2020).

* `covariance_similarity(x_a, x_b)`: whether two tasks' inputs (or
  embeddings) span the same subspace; `task_covariance_similarity(model,
  data)` for every pair of a model's tasks.
* `svd_task_weights(features, labels, rank)`: Algorithm 2's task weights;
  `tag_keras.mtl.SVDTaskWeights` applies them during `fit`.
* `CovarianceAlignment`, `AlignmentSchedule`: Algorithm 1's per-task
  alignment matrices and the alternating schedule that trains them.

References:
    Wu, Zhang and Ré, "Understanding and Improving Information Transfer in
    Multi-Task Learning", ICLR 2020.
"""

from tag_keras.transfer.alignment import AlignmentSchedule
from tag_keras.transfer.alignment import CovarianceAlignment
from tag_keras.transfer.covariance import covariance_similarity
from tag_keras.transfer.covariance import task_covariance_similarity
from tag_keras.transfer.svd import svd_task_weights

__all__ = [
    "AlignmentSchedule",
    "CovarianceAlignment",
    "covariance_similarity",
    "svd_task_weights",
    "task_covariance_similarity",
]
