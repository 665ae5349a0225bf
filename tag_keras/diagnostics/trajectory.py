"""The trajectory measures, by name, and one model's measurement of them.

`tag_keras.callbacks.TrajectoryLogger` records them every n epochs through
`TrajectoryMeasures`; `tag_keras.diagnostics.read_trajectory` reads its
file back.
"""

import math

import numpy as np

from tag_keras import _data
from tag_keras.diagnostics.conflict import gradient_conflict_of
from tag_keras.diagnostics.per_example import fisher_trace_of
from tag_keras.diagnostics.per_example import gradient_coherence_of
from tag_keras.diagnostics.worst_case import sharpness_of
from tag_keras.tasks import labels as labels_lib
from tag_keras.tasks.evaluation import losses_and_errors
from tag_keras.tasks.view import TaskView

#: The measure groups `TrajectoryLogger(measures=...)` accepts.
MEASURES = ("loss", "error", "conflict", "sharpness", "fisher", "coherence")


class TrajectoryMeasures:
    """The measures of one model's tasks on fixed examples.

    The examples (the first `max_samples` of each split, per task where a
    measure needs a task's labelled examples) are read at the first
    `measure`, then reused, as are the traced functions of the view.

    Args:
        model: The compiled dict-output model.
        data: `{"train": ..., "test": ..., "val": ... or None}`.
        measures: Which of `MEASURES` to compute.
        tasks: The tasks to measure, or None for all.
        max_samples: Examples per task read from each split.
        **settings: `rho`, `sharpness_steps`, `sharpness_batch_size`,
            `fisher_batch_size`, `fisher_samples`, `coherence_batch_size`.
    """

    def __init__(self, model, data, measures, tasks, max_samples, **settings):
        self._model, self._data = model, data
        self.measures, self.tasks = measures, tasks
        self.max_samples, self._settings = max_samples, settings
        self._view = self._examples = self._conflict_batches = None
        self._tasks = self._splits = None

    def measure(self):
        """`{(task, measure): value}` at the model's current weights."""
        self._prepare()
        view, settings, values = self._view, self._settings, {}
        names = {
            "train": ("loss", "train_error"),
            "test": ("test_loss", "error"),
            "val": ("val_loss", "val_error"),
        }
        if {"loss", "error"} & set(self.measures):
            for split, (x, y) in self._splits.items():
                results = losses_and_errors(view, self._tasks, x, y)
                for task, (loss, error) in results.items():
                    loss_name, error_name = names[split]
                    if "loss" in self.measures:
                        values[task, loss_name] = loss
                    if "error" in self.measures and not np.isnan(error):
                        values[task, error_name] = error
        for task in self._tasks:
            if not {"sharpness", "fisher", "coherence"} & set(self.measures):
                break
            train_x, train_y = self._examples[task]
            if "sharpness" in self.measures:
                values[task, "sharpness"] = sharpness_of(
                    view,
                    task,
                    train_x,
                    train_y,
                    settings["rho"],
                    settings["sharpness_batch_size"],
                    settings["sharpness_steps"],
                )
            if "fisher" in self.measures:
                exact = view.heads.is_classifier(
                    task
                ) or view.heads.is_multi_label(task)
                samples = None if exact else settings["fisher_samples"]
                values[task, "fisher"] = fisher_trace_of(
                    view, task, train_x, settings["fisher_batch_size"], samples
                )
            if "coherence" in self.measures:
                values[task, "coherence"] = gradient_coherence_of(
                    view,
                    task,
                    train_x,
                    train_y,
                    settings["coherence_batch_size"],
                )
        if "conflict" in self.measures and self._conflict_batches:
            frame = gradient_conflict_of(
                view, self._conflict_batches, self._tasks
            )
            for task, row in frame.iterrows():
                for column, name in (
                    ("cosine_to_total", "conflict"),
                    ("conflict_rate", "conflict_rate"),
                    ("norm_ratio", "norm_ratio"),
                ):
                    values[task, name] = float(row[column])
        return {
            key: float(v) for key, v in values.items() if not math.isnan(v)
        }

    def _prepare(self):
        if self._view is not None:
            return
        view = TaskView(self._model, self._data["train"])
        self._tasks = view.tasks if self.tasks is None else self.tasks
        for task in self._tasks:
            view.check_task(task, "tasks")
        # Loss and error: the first `max_samples` examples of each split,
        # every task evaluated in one forward pass.
        self._splits = {
            split: _data.examples(data, view.tasks, self.max_samples)
            for split, data in self._data.items()
            if data is not None
        }
        self._examples = {}
        if {"sharpness", "fisher", "coherence"} & set(self.measures):
            self._examples = {
                task: labels_lib.task_examples(
                    self._data["train"], view.tasks, task, self.max_samples
                )
                for task in self._tasks
            }
        if len(view.tasks) >= 2 and view.shared_variables:
            batch = self._settings["sharpness_batch_size"]
            self._conflict_batches = list(
                _data.batches(
                    self._data["train"],
                    batch,
                    view.tasks,
                    max(1, self.max_samples // batch),
                )
            )
        self._view = view
