"""The measurement core: per-task gradients in, affinity recorded.

`Meter` is what a training step calls on a measured step; it needs no
model and no `train_step`, so a custom training loop can use it as is.
"""


class Meter:
    """Computes one step's affinity matrix and adds it to the state.

    Args:
        estimator: One of `tag_keras.measure.estimators`' estimators.
        state: The `AffinityState` that accumulates the matrices.

    Example:

    ```python
    meter = Meter(LookaheadEstimator(lookahead), AffinityState(n))
    done = meter.record(task_gradients, target, source_ok, step)
    ```
    """

    def __init__(self, estimator, state):
        self.estimator, self.state = estimator, state

    def record(self, gradients, target, source_ok, step):
        """Measures on `target` and records; returns a tensor to wait on.

        Args:
            gradients: The step's `TaskGradients`.
            target: The step's `Target`.
            source_ok: `[n]` booleans: the task can be a source this step.
            step: The training step's number (the optimizer's iterations).
        """
        z = self.estimator.matrix(gradients, target)
        return self.state.record(z, source_ok, target.ok, step)

    def start(self, target):
        """The estimator's `Session` for one step on `target`."""
        return self.estimator.start(target)

    def record_session(self, session, gradients, source_ok, step):
        """`record` for a session already fed every source's gradient."""
        z = session.matrix(gradients)
        return self.state.record(z, source_ok, session.target.ok, step)
