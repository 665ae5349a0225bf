"""The measurement core: per-task gradients in, affinity recorded.

`Meter` is what a training step calls on a measured step; it needs no
model and no `train_step`, so a custom training loop can use it as is.
"""

from tag_keras._tensorflow import tf
from tag_keras.measure import estimators
from tag_keras.measure import sources


class Meter:
    """Computes one step's affinity matrix and adds it to the state.

    Args:
        estimator: One of `tag_keras.measure.estimators`' estimators.
        state: The `AffinityState` that accumulates the matrices.
        groups: Optional `sources.GroupMeter`: the group sources measured
            on the same step.

    Example:

    ```python
    meter = Meter(make_estimator("lookahead", lambda: lookahead),
                  AffinityState(n))
    done = meter.record(task_gradients, target, source_ok, step)
    ```
    """

    def __init__(self, estimator, state, groups=None):
        self.estimator, self.state, self.groups = estimator, state, groups

    @classmethod
    def for_settings(
        cls,
        settings,
        lookahead,
        optimizer,
        state,
        group_sources=None,
        group_state=None,
    ):
        """The `Meter` of an `AffinitySettings`' method.

        Args:
            settings: The `AffinitySettings`.
            lookahead: A function making the `OptimizerLookahead` (called
                when the method's estimator `uses_lookahead`).
            optimizer: The optimizer that updates the shared variables.
            state: The `AffinityState` to record into.
            group_sources: Optional `sources.GroupSources` measured too.
            group_state: Their `GroupAffinityState`.
        """
        method = settings.method
        groups = None
        if group_sources is not None:
            groups = sources.GroupMeter(group_sources, group_state)
        return cls(
            estimators.make_estimator(
                method,
                lookahead,
                optimizer=optimizer,
                scale_by_learning_rate=settings.scale_by_learning_rate,
                kernels_only=settings.cosine_kernels_only,
                step=settings.lookahead_step,
            ),
            state,
            groups,
        )

    def record(self, gradients, target, source_ok, step):
        """Measures on `target` and records; returns a tensor to wait on.

        Args:
            gradients: The step's `TaskGradients`.
            target: The step's `Target`.
            source_ok: `[n]` booleans: the task can be a source this step.
            step: The training step's number (the optimizer's iterations).
        """
        z = self.estimator.matrix(gradients, target)
        return self._with_groups(
            self.state.record(z, source_ok, target.ok, step),
            gradients,
            target,
            source_ok,
            step,
        )

    def _with_groups(self, done, gradients, target, source_ok, step):
        """`done`, after the group sources are recorded too (if any)."""
        if self.groups is None:
            return done
        with tf.control_dependencies([done]):
            groups_done = self.groups.record(
                self.estimator, gradients, target, source_ok, step
            )
        with tf.control_dependencies([groups_done]):
            return tf.identity(done)
