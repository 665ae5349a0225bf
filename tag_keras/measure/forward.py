"""`ForwardPass`: a custom loop's forward pass, replayable at moved weights.

The lookahead evaluates each task's loss on the step's own batch after a
step of the shared weights. For that to be the loss `TaskAffinityModel`
measures, the replay must see the model as the real forward pass saw it:
the same dropout masks (the layers' seed state before the pass), the same
BatchNorm statistics before the pass (their moving averages; in training
mode the batch's own statistics), every other weight unchanged, and no
variable written. `ForwardPass` records that state, runs the real forward
pass, and replays it with `stateless_call`, so a loop cannot get the
order wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import keras

from tag_keras import _keras_private
from tag_keras.measure.target import snapshot


class ForwardPass:
    """The step's forward pass in training mode, and its replay.

    Create it inside the step's `GradientTape`, where the loop would call
    `model(x, training=True)`; read `outputs` for the losses; pass
    `losses_at(task_losses)` to `AffinityMeter.measure`.

    Args:
        model: The Keras model of the step.
        x: The batch's inputs.
        shared_variables: The shared variables the meter moves (its own
            `shared_variables`; `AffinityMeter.forward` passes them).

    Attributes:
        outputs: The model's outputs on `x`, in training mode (the real
            forward pass: it updates BatchNorm statistics and dropout
            seeds as `model(x, training=True)` does).
    """

    def __init__(self, model: keras.Model, x: Any, shared_variables: Sequence):
        self.model, self.x = model, x
        # Read before the forward pass, which advances the dropout seeds
        # and the BatchNorm moving statistics.
        self._non_trainable = snapshot(model.non_trainable_variables)
        self._trainable = snapshot(model.trainable_variables)
        ids = [id(v) for v in shared_variables]
        unknown = len(ids) - sum(
            id(v) in ids for v in model.trainable_variables
        )
        if unknown:
            raise ValueError(
                f"{unknown} of the shared variables are not trainable "
                "variables of `model`; the replay can only move the model's "
                "own weights. Received: shared variables "
                f"{[v.path for v in shared_variables]}."
            )
        self._positions = [
            ids.index(id(v)) if id(v) in ids else None
            for v in model.trainable_variables
        ]
        self.outputs = _keras_private.call_in_training(model, x)

    def losses_at(
        self, task_losses: Callable[[Any], dict]
    ) -> Callable[[list], dict]:
        """`values -> {task: loss}` for `AffinityMeter.measure`.

        Args:
            task_losses: `outputs -> {task: scalar loss}`, the loop's own
                losses of this batch (close over its labels).

        Returns:
            A function of the shared variables' new values (one tensor per
            shared variable) that returns the tasks' losses on this batch,
            replayed from the state before the forward pass; nothing is
            written.
        """

        def at(values):
            trainable = [
                own if k is None else values[k]
                for own, k in zip(self._trainable, self._positions)
            ]
            outputs = _keras_private.stateless_call_in_training(
                self.model, trainable, self._non_trainable, self.x
            )
            return task_losses(outputs)

        return at
