"""`AffinityReadout`: a model's task names, affinity state and matrices."""

import numpy as np

from tag_keras.measure import affinity as affinity_lib
from tag_keras.measure import sources as sources_lib
from tag_keras.measure.state import AffinityState


class AffinityReadout:
    """Model mixin: the task names, the `affinity_state` layer, DataFrames.

    The task names are decided in one place, `_decide_task_names` (from
    `task_names=`, the output dict, the compiled loss dict or, at the first
    traced step, the outputs with a loss), which also creates the state.
    Row = source task (whose gradient is applied), column = target task
    (whose loss is measured).
    """

    @property
    def task_names(self):
        """The task names, in the order of the affinity matrices."""
        if self._task_names is None:
            raise ValueError(
                "The task names are not known yet: compile the model with a "
                "loss dict keyed by task, pass `task_names=`, or train it.")
        return self._task_names

    @property
    def has_task_names(self):
        """Whether the task names (and the affinity state) exist yet."""
        return self._task_names is not None

    def affinity(self):
        """Mean affinity over all measured steps (DataFrame, NaN = never)."""
        return self._frame(self._state("affinity").mean())

    def affinity_stderr(self):
        """Standard error of each mean: std (ddof=1) / sqrt(count)."""
        return self._frame(self._state("affinity_stderr").stderr())

    def group_affinity(self):
        """Every measured source, single tasks and groups, onto every task.

        Returns:
            `pandas.DataFrame` with columns `sources` (task names joined by
            `|`), `target`, `affinity` (the mean over the steps that
            measured the pair), `count` and `stderr` (std, ddof = 1, over
            sqrt(count); NaN below two steps). Single-task sources come
            first (the `affinity()` matrix, long), then the groups
            `affinity_sources` and `affinity_random_subsets` measure.
        """
        state = self._state("group_affinity")
        single = (state.sums.numpy(), state.squares.numpy(),
                  state.counts.numpy())
        groups, masks = None, None
        if self.group_sources is not None:
            table = self.group_affinity_state
            groups = (table.sums.numpy(), table.squares.numpy(),
                      table.counts.numpy())
            masks = self.group_sources.masks
        return sources_lib.group_frame(self.task_names, single, groups, masks)

    def affinity_counts(self):
        """How many steps entered each pair's mean (DataFrame of ints)."""
        counts = self._state("affinity_counts").counts.numpy()
        return self._frame(counts.astype(np.int64))

    def affinity_skipped(self):
        """How many measured steps skipped each pair (DataFrame of ints)."""
        skips = self._state("affinity_skipped").skips.numpy()
        return self._frame(skips.astype(np.int64))

    def last_step_affinity(self):
        """`(step, DataFrame)` of the last measured step, or None.

        `step` is the 0-based training step (the optimizer's iteration count
        before that step's update); skipped pairs are NaN.
        """
        last = self._state("last_step_affinity").last_measured()
        return None if last is None else (last[0], self._frame(last[1]))

    def affinity_totals(self):
        """`(sums, counts)` arrays: a snapshot to take differences of."""
        return self._state("affinity_totals").totals()

    def epoch_matrices(self, start):
        """`(epoch mean or None, whole-run mean)` as DataFrames.

        The epoch mean is over the steps since `start` (an
        `affinity_totals()` snapshot; None: since the beginning), None
        when none was measured.
        """
        sums, counts = self.affinity_totals()
        whole = affinity_lib.mean_matrix(sums, counts, self.task_names)
        if start is not None:
            sums, counts = sums - start[0], counts - start[1]
        epoch = (affinity_lib.mean_matrix(sums, counts, self.task_names)
                 if counts.sum() > 0 else None)
        return epoch, whole

    def task_names_for(self, outputs):
        """The task names, decided from `outputs` (keys) if still open."""
        self._decide_task_names(outputs)
        return self.task_names

    def _decide_task_names(self, names):
        """The one place task names are set; creates the affinity state."""
        if self._task_names is not None or not names:
            return
        names = tuple(names)
        if len(set(names)) != len(names):
            raise ValueError("`task_names` must be distinct. Received: "
                             f"task_names={list(names)}.")
        groups, state = sources_lib.make(self, len(names))
        joined = [t for t in names if sources_lib.SEPARATOR in t]
        if groups is not None and joined:
            raise ValueError(
                "With group sources (`affinity_sources`, "
                "`affinity_random_subsets`) a group is written as its task "
                f"names joined by {sources_lib.SEPARATOR!r}, so no task name "
                "may contain it: rename those outputs. Received: task names "
                f"{joined}.")
        self._task_names = names
        self.affinity_state = AffinityState(len(names), name="affinity_state")
        self.group_sources = groups
        if state is not None:
            self.group_affinity_state = state
        method = self.training_method
        if method is not None and not method.built:
            method.build_tasks(names)

    def _state(self, method):
        if self._task_names is None:
            raise ValueError(
                f"`{method}()` needs the task names: compile the model with a "
                "loss dict keyed by task, pass `task_names=`, or train it "
                "first.")
        return self.affinity_state

    def _frame(self, matrix):
        return affinity_lib.as_frame(matrix, self.task_names)
