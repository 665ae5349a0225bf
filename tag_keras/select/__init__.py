"""Selection: from measured affinities or performances to task groups.

Holds `choose_groups` (the one path from any input and budgets to timed
groupings and the groups document, which `tag-select` and the experiments
call), `select_groups` and `Grouping` (groups from an affinity matrix, exact
up to 16 tasks), `select_groups_from_performance` (HOA: groups from the
measured losses of trained networks), `select_groups_from_group_affinity`
(groups from measured group sources, with a surrogate for the rest), the
exact solvers and the local
search behind them, the groups document (`document`: write, read,
validate) and the `tag-select` command (`cli`).

May import NumPy, SciPy, pandas and absl (the command only). Never imports
TensorFlow, Keras or `tag_keras.measure`: selection runs on a CSV, on a
machine without TensorFlow, and starts in a fraction of a second.
"""

from tag_keras._errors import InputError
from tag_keras.select.choose import Selection
from tag_keras.select.choose import choose_groups
from tag_keras.select.document import BudgetResult
from tag_keras.select.document import Candidate
from tag_keras.select.document import GroupsDocument
from tag_keras.select.document import groups_document
from tag_keras.select.document import read_document
from tag_keras.select.document import read_groups
from tag_keras.select.document import validate_groups
from tag_keras.select.document import write_groups
from tag_keras.select.group_affinity import read_group_affinity
from tag_keras.select.group_affinity import select_groups_from_group_affinity
from tag_keras.select.group_affinity import surrogate_fit
from tag_keras.select.grouping import Grouping
from tag_keras.select.grouping import select_groups
from tag_keras.select.performance import read_performance
from tag_keras.select.performance import select_groups_from_performance
from tag_keras.select.readers import read_affinity
from tag_keras.select.readers import read_table

__all__ = [
    "BudgetResult",
    "Candidate",
    "Grouping",
    "GroupsDocument",
    "InputError",
    "Selection",
    "choose_groups",
    "groups_document",
    "read_affinity",
    "read_document",
    "read_group_affinity",
    "read_groups",
    "read_performance",
    "read_table",
    "select_groups",
    "select_groups_from_group_affinity",
    "select_groups_from_performance",
    "surrogate_fit",
    "validate_groups",
    "write_groups",
]
