"""`AffinityRecorder`: the one owner of what a measurement accumulates.

`TaskAffinityModel` and `AffinityMeter` each hold one recorder. It owns the
settings, the task names, the state layers (the running sums of single and
group sources), makes the `Meter` that records a step into them, and the epoch
bookkeeping (`epoch_affinity`, `fit_affinity`). `AffinityLogger` reads the
recorder's small interface, nothing else of the model.
"""

from collections.abc import Callable

import keras
import numpy as np
import pandas as pd

from tag_keras.measure import affinity as affinity_lib
from tag_keras.measure import sources as sources_lib
from tag_keras.measure.host_state import HostAffinityState
from tag_keras.measure.meter import Meter
from tag_keras.measure.settings import AffinitySettings
from tag_keras.measure.state import AffinityState
from tag_keras.tasks.names import check_task_names


class AffinityRecorder:
    """The state, meter and epoch matrices of one measurement.

    Args:
        settings: The `AffinitySettings`.
        task_names: The task names, in matrix order (distinct; none may
            hold `|` when groups are sources).

    Attributes:
        settings: The `AffinitySettings`.
        task_names: The task names (a tuple).
        state: The `AffinityState` layer (the owner tracks it as
            `affinity_state`, so checkpoints keep it).
        group_sources: The `sources.GroupSources`, or None.
        group_state: Their `GroupAffinityState` layer, or None.
        epoch_affinity: The mean over the epoch that last ended (a
            DataFrame), None before the first epoch end or when the epoch
            measured nothing.
        fit_affinity: The mean over every step measured up to the last
            epoch end (not rolled back when weights are restored).
        measured_steps: How many steps the owner measured, counted on the
            host, or None when the host cannot know (a traced loop decides):
            the logger then reads the state after every batch.
    """

    def __init__(self, settings: AffinitySettings, task_names):
        self.settings = settings
        groups, group_state = sources_lib.make(settings, len(task_names))
        names = check_task_names(task_names, groups=groups is not None)
        self.task_names = names
        if keras.backend.backend() == "jax":  # float64 sums on the host
            self.state = HostAffinityState(len(names), name="affinity_state")
        else:
            self.state = AffinityState(len(names), name="affinity_state")
        self.group_sources, self.group_state = groups, group_state
        self.epoch_affinity = self.fit_affinity = None
        self.measured_steps: int | None = None
        self._epoch_start = None

    # The measurement ----------------------------------------------------

    def make_meter(self, lookahead: Callable, optimizer) -> Meter:
        """A `Meter` recording into this recorder's state.

        The caller keeps it for as long as its optimizer lives: a model
        makes one per compiled step (a recompiled model has a new
        optimizer, hence a new lookahead), a custom loop one for good.

        Args:
            lookahead: Makes the `OptimizerLookahead` of the shared
                variables (called when the method's estimator
                `uses_lookahead`).
            optimizer: The optimizer that updates the shared variables.
        """
        return Meter.for_settings(
            self.settings,
            lookahead,
            optimizer,
            self.state,
            self.group_sources,
            self.group_state,
        )

    # Epochs ---------------------------------------------------------------

    def begin_epoch(self):
        """Starts an epoch: its mean counts the steps from now on."""
        self.epoch_affinity = None
        self._epoch_start = self.state.totals()

    def end_epoch(self):
        """Sets `epoch_affinity` (since `begin_epoch`) and `fit_affinity`;
        the next epoch starts here unless `begin_epoch` says otherwise."""
        self.epoch_affinity, self.fit_affinity = self.epoch_matrices(
            self._epoch_start
        )
        self._epoch_start = self.state.totals()

    def epoch_matrices(self, start):
        """`(epoch mean or None, whole-run mean)` as DataFrames.

        The epoch mean is over the steps since `start` (a `totals()`
        snapshot; None: since the beginning), None when none was measured.
        """
        sums, counts = self.state.totals()
        whole = affinity_lib.mean_matrix(sums, counts, self.task_names)
        if start is not None:
            sums, counts = sums - start[0], counts - start[1]
        epoch = (
            affinity_lib.mean_matrix(sums, counts, self.task_names)
            if counts.sum() > 0
            else None
        )
        return epoch, whole

    # Readout --------------------------------------------------------------

    def affinity(self) -> pd.DataFrame:
        """Mean affinity over all measured steps (NaN = never)."""
        return self._frame(self.state.mean())

    def affinity_stderr(self) -> pd.DataFrame:
        """Standard error of each mean: std (ddof=1) / sqrt(count)."""
        return self._frame(self.state.stderr())

    def affinity_counts(self) -> pd.DataFrame:
        """How many steps entered each pair's mean (ints)."""
        return self._frame(self.state.counts.numpy().astype(np.int64))

    def affinity_skipped(self) -> pd.DataFrame:
        """How many measured steps skipped each pair (ints)."""
        return self._frame(self.state.skips.numpy().astype(np.int64))

    def last_step_affinity(self):
        """`(step, DataFrame)` of the last measured step, or None."""
        last = self.state.last_measured()
        return None if last is None else (last[0], self._frame(last[1]))

    def affinity_totals(self):
        """`(sums, counts)` arrays: a snapshot to take differences of."""
        return self.state.totals()

    def group_affinity(self) -> pd.DataFrame:
        """Every measured source, single tasks and groups, onto every task
        (see `TaskAffinityModel.group_affinity`)."""
        state = self.state
        single = (
            state.sums.numpy(),
            state.squares.numpy(),
            state.counts.numpy(),
        )
        groups, masks = None, None
        if self.group_sources is not None:
            table = self.group_state
            groups = (
                table.sums.numpy(),
                table.squares.numpy(),
                table.counts.numpy(),
            )
            masks = self.group_sources.masks
        return sources_lib.group_frame(self.task_names, single, groups, masks)

    def _frame(self, matrix):
        return affinity_lib.as_frame(matrix, self.task_names)
