"""tag_keras: which tasks should be trained together?

Measures inter-task affinity (TAG) inside an ordinary Keras `model.fit`, turns
the affinities into task groupings for a budget of networks, and ships the
usual multi-task baselines and training augmentations.
"""

__version__ = "0.1.0"

from tag_keras.affinity import METHODS as AFFINITY_METHODS
from tag_keras.grouping import Grouping, select_groups
from tag_keras.model import TaskAffinityModel

__all__ = [
    "AFFINITY_METHODS",
    "Grouping",
    "TaskAffinityModel",
    "select_groups",
]
