"""`AffinityReadout`: the owner's settings, task names and matrices.

`TaskAffinityModel` and `AffinityMeter` mix it in. It shows the owner's
`AffinitySettings` as read-only attributes (`affinity_method`, ...),
decides the task names (from `task_names=`, the output dict, the compiled
loss dict or, at the first traced step, the outputs with a loss), makes
the owner's
`AffinityRecorder` then, and offers the recorder's matrices as the
owner's methods. Row = source task (whose gradient is applied), column =
target task (whose loss is measured).
"""

from tag_keras.measure.recorder import AffinityRecorder


class AffinityReadout:
    """Owner mixin: needs `affinity_settings` and `_recorder` (None until
    the task names are known)."""

    # The settings, read-only (they live in `affinity_settings`).
    affinity_method = property(lambda self: self.affinity_settings.method)
    lookahead_step = property(
        lambda self: self.affinity_settings.lookahead_step
    )
    scale_by_learning_rate = property(
        lambda self: self.affinity_settings.scale_by_learning_rate
    )
    cosine_kernels_only = property(
        lambda self: self.affinity_settings.cosine_kernels_only
    )
    affinity_sources = property(lambda self: self.affinity_settings.sources)
    affinity_random_subsets = property(
        lambda self: self.affinity_settings.random_subsets
    )
    affinity_seed = property(lambda self: self.affinity_settings.seed)
    max_subset_tasks = property(
        lambda self: self.affinity_settings.max_subset_tasks
    )

    @property
    def affinity_recorder(self) -> AffinityRecorder:
        """The `AffinityRecorder` (made when the task names are known)."""
        return self._recorded("affinity_recorder")

    @property
    def task_names(self):
        """The task names, in the order of the affinity matrices."""
        if self._recorder is None:
            raise ValueError(
                "The task names are not known yet: compile the model with a "
                "loss dict keyed by task, pass `task_names=`, or train it."
            )
        return self._recorder.task_names

    @property
    def has_task_names(self):
        """Whether the task names (and the recorder) exist yet."""
        return self._recorder is not None

    @property
    def group_sources(self):
        """The measured group sources (`sources.GroupSources`), or None."""
        return (
            None if self._recorder is None else (self._recorder.group_sources)
        )

    @property
    def epoch_affinity(self):
        """The mean over the epoch that last ended (DataFrame), or None."""
        return (
            None if self._recorder is None else (self._recorder.epoch_affinity)
        )

    @property
    def fit_affinity(self):
        """The mean over every step measured up to the last epoch end."""
        return (
            None if self._recorder is None else (self._recorder.fit_affinity)
        )

    def affinity(self):
        """Mean affinity over all measured steps (DataFrame, NaN = never)."""
        return self._recorded("affinity").affinity()

    def affinity_stderr(self):
        """Standard error of each mean: std (ddof=1) / sqrt(count)."""
        return self._recorded("affinity_stderr").affinity_stderr()

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
        return self._recorded("group_affinity").group_affinity()

    def affinity_counts(self):
        """How many steps entered each pair's mean (DataFrame of ints)."""
        return self._recorded("affinity_counts").affinity_counts()

    def affinity_skipped(self):
        """How many measured steps skipped each pair (DataFrame of ints)."""
        return self._recorded("affinity_skipped").affinity_skipped()

    def last_step_affinity(self):
        """`(step, DataFrame)` of the last measured step, or None.

        `step` is the 0-based training step (the optimizer's iteration count
        before that step's update); skipped pairs are NaN.
        """
        return self._recorded("last_step_affinity").last_step_affinity()

    def affinity_totals(self):
        """`(sums, counts)` arrays: a snapshot to take differences of."""
        return self._recorded("affinity_totals").affinity_totals()

    def epoch_matrices(self, start):
        """`(epoch mean or None, whole-run mean)` as DataFrames (see
        `AffinityRecorder.epoch_matrices`)."""
        return self._recorded("epoch_matrices").epoch_matrices(start)

    def task_names_for(self, outputs):
        """The task names, decided from `outputs` (keys) if still open."""
        self._decide_task_names(outputs)
        return self.task_names

    def _decide_task_names(self, names):
        """The one place task names are set; makes the recorder."""
        if self._recorder is not None or not names:
            return
        recorder = AffinityRecorder(self.affinity_settings, names)
        self._recorder = recorder
        # Tracked under these names, so checkpoints keep the state.
        self.affinity_state = recorder.state
        if recorder.group_state is not None:
            self.group_affinity_state = recorder.group_state
        self._task_names_decided(recorder.task_names)

    def _task_names_decided(self, names):
        """Hook: the owner's work once the task names are known."""

    def _recorded(self, method):
        if self._recorder is None:
            raise ValueError(
                f"`{method}` needs the task names: compile the model with a "
                "loss dict keyed by task, pass `task_names=`, or train it "
                "first."
            )
        return self._recorder
