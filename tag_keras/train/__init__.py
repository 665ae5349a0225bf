"""Group training for any model, and the validated split decision.

Affinity proposes, trained networks decide. `GroupTrainer` trains each
distinct group of tasks once per seed from the user's
`build(tasks) -> compiled keras.Model` and data, caching every network in
a directory (an interrupted run resumes). `decide` compares each budget's
candidate groupings with the all-task network on validation data, paired
over examples and seeds (`compare`), and answers "split", "keep
together" or "undecided" against a margin, adding seeds to undecided
budgets up to `max_seeds`; test numbers are shown beside it. `tag-train`
is the command line (`tag_keras.train.cli`).

Imports TensorFlow and Keras (it trains networks); the selection side
(`tag_keras.select`) never imports this package.
"""

import importlib

# Public name -> module that defines it, imported on first use, so that
# `tag-train --help` and bad-input errors come before TensorFlow loads.
_LAZY = {
    "Comparison": "comparison",
    "compare": "comparison",
    "KEEP_TOGETHER": "comparison",
    "SPLIT": "comparison",
    "UNDECIDED": "comparison",
    "Decision": "decision",
    "Option": "decision",
    "decide": "decision",
    "planned_looks": "decision",
    "format_table": "decision_files",
    "write_decision": "decision_files",
    "read_decision": "decision_files",
    "GroupTrainer": "networks",
    "Network": "networks",
    "NonFiniteLossError": "networks",
    "random_partitions": "random_groupings",
}

# A list at run time; ruff cannot see it is one.
__all__ = sorted(_LAZY)  # noqa: PLE0605


def __getattr__(name):
    if name in _LAZY:
        value = getattr(
            importlib.import_module(f"tag_keras.train.{_LAZY[name]}"), name
        )
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tag_keras.train' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
