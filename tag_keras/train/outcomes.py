"""Per-example losses and errors of a trained network on a split.

The decision pairs networks example by example, so every network is
evaluated on the same examples in the same order, and keeps one loss and
one error per example and task (`tag_keras.tasks.evaluation`: the
compiled loss without `loss_weights`; the error is 0/1 for a classifier,
the share of wrong unit decisions for a multi-label head, NaN for a
regression head). An example not labelled for a task is NaN there.
"""

import numpy as np

from tag_keras.tasks import evaluation
from tag_keras.tasks.view import TaskView
from tag_keras.train import data as data_lib


def evaluate_network(model, split, tasks, label_tasks, batch_size=256):
    """`{task: (losses, errors)}` of `model` on `split`, per example.

    Args:
        model: A compiled model with dict outputs holding `tasks`.
        split: One split of the data (see `tag_keras.train.data`).
        tasks: The tasks to evaluate (the model's group).
        label_tasks: Every task the split has labels for.
        batch_size: Examples per forward pass (arrays only).
    """
    tasks = list(tasks)
    view = None
    losses = {t: [] for t in tasks}
    errors = {t: [] for t in tasks}
    for x, y in data_lib.evaluation_batches(split, label_tasks, batch_size):
        y = {t: y[t] for t in tasks}
        if view is None:
            view = TaskView(model, (x, y))
            missing = sorted(set(tasks) - set(view.tasks))
            if missing:
                raise ValueError(
                    f"The network built for tasks {tasks} has no output "
                    f"with a loss for {missing}; its tasks are "
                    f"{view.tasks}. The model function must return a "
                    "model with one output per task it is given."
                )
        per_task = evaluation.example_losses_and_errors(
            view, tasks, x, y, batch_size=len(next(iter(y.values())))
        )
        for task, (loss, error) in per_task.items():
            losses[task].append(loss)
            errors[task].append(error)
    if view is None:
        raise ValueError("A split holds no examples.")
    return {
        t: (np.concatenate(losses[t]), np.concatenate(errors[t]))
        for t in tasks
    }
