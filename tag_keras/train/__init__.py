"""Group training for any model, and the validated split decision.

Affinity proposes, trained networks decide. `GroupTrainer` trains each
distinct group of tasks once per seed from the user's
`build(tasks) -> compiled keras.Model` and data, caching every network in
a directory (an interrupted run resumes). `decide` compares each budget's
candidate groupings with the all-task network on validation data, paired
over examples and seeds, and says "split" only when the interval shows
the split better; test numbers are shown beside it. `tag-train` is the
command line (`tag_keras.train.cli`).

Imports TensorFlow and Keras (it trains networks); the selection side
(`tag_keras.select`) never imports this package.
"""

from tag_keras.train.decision import Decision
from tag_keras.train.decision import KEEP_TOGETHER
from tag_keras.train.decision import Option
from tag_keras.train.decision import SPLIT
from tag_keras.train.decision import decide
from tag_keras.train.decision import format_table
from tag_keras.train.decision import write_decision
from tag_keras.train.networks import GroupTrainer
from tag_keras.train.networks import Network
from tag_keras.train.random_groupings import random_partitions
from tag_keras.train.statistics import paired_bootstrap

__all__ = [
    "Decision", "GroupTrainer", "KEEP_TOGETHER", "Network", "Option",
    "SPLIT", "decide", "format_table", "paired_bootstrap",
    "random_partitions", "write_decision",
]
