"""One estimator per affinity method, behind one declared interface.

`estimator.matrix(gradients, target)` takes the step's `TaskGradients` and
`Target` and returns the `[n, n]` affinity matrix, row = source task (whose
gradient is applied), column = target task (whose loss is measured). The
rows of a lookahead or first-order matrix are computed one source at a time
in a `tf.while_loop` (`rows.one_at_a_time`), so tracing grows with n.

Every method, built in or a user's, is an `AffinityEstimator` subclass
registered under its `affinity_method=` name with
`register_affinity_method`; `check_method` is the one place a name is
checked, and the estimator class's attributes say what else the method
supports (group sources, held-out data, a tentative step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from keras import ops

from tag_keras.measure import affinity as affinity_lib
from tag_keras.measure import rows as rows_lib

if TYPE_CHECKING:  # for annotations only
    import tensorflow as tf

    from tag_keras.measure.target import Target
    from tag_keras.tasks.gradients import TaskGradients


#: The built-in methods; `affinity_methods()` lists the registered ones.
AFFINITY_METHODS = affinity_lib.AFFINITY_METHODS
#: The tentative steps `TaskAffinityModel(lookahead_step=...)` accepts.
STEPS = ("optimizer", "sgd", "increment")


@dataclasses.dataclass(frozen=True)
class EstimatorInputs:
    """What an estimator is built from (`AffinityEstimator.__init__`).

    Attributes:
        step: The `TentativeStep` of each source (the compiled optimizer's
            lookahead), or None for a method whose `uses_lookahead` is
            False.
        optimizer: The optimizer that updates the shared variables.
        scale_by_learning_rate: Divide by this step's learning rate
            (`TaskAffinityModel(scale_by_learning_rate=)`).
        kernels_only: `cosine_kernels_only=`: weight tensors of rank > 1.
    """

    step: Any = None
    optimizer: Any = None
    scale_by_learning_rate: bool = True
    kernels_only: bool = False


class AffinityEstimator:
    """The interface of an affinity method.

    Subclass it, implement `source_rows` (or `matrix`), and register the
    class with `register_affinity_method(name, cls)`; then
    `TaskAffinityModel(affinity_method=name)` and `AffinityMeter` measure
    with it, and everything downstream (the state, the per-epoch matrix,
    `AffinityLogger`, the selectors) reads its matrix like a built-in one.
    Both methods run inside the traced train step (TensorFlow ops).

    Class attributes declare what the method supports:

    * `uses_lookahead`: it steps the shared weights with the compiled
      optimizer (`inputs.step`, which `lookahead_step=` picks); False
      builds no lookahead.
    * `group_sources`: `source_rows` gives a row for any summed gradient,
      so `affinity_sources=` other than `"tasks"` can be measured.
    * `held_out`: the target losses may be measured on `affinity_data`
      batches (its `target` is then a held-out batch).

    Args:
        inputs: The `EstimatorInputs`.
    """

    uses_lookahead = False
    group_sources = False
    held_out = False

    def __init__(self, inputs: EstimatorInputs):
        self.inputs = inputs

    def matrix(self, gradients: TaskGradients, target: Target) -> tf.Tensor:
        """`[n, n]` affinities of this step: row i from task i's gradient.

        Args:
            gradients: The step's `TaskGradients` (per-task gradients of
                the shared variables, flattened on demand).
            target: The step's `Target`: `before` (`[n]` target losses at
                the current weights), `losses_at(values)` (the `[n]`
                losses at other shared values, one forward pass),
                `shared_values` and `ok`.

        The default computes `source_rows` for each task, one at a time.
        """
        row = self.source_rows(gradients, target)
        gradients.prepare_rows()  # outside the loop
        return rows_lib.one_at_a_time(
            len(gradients), lambda i: row(gradients.row(i))
        )

    def source_rows(
        self, gradients: TaskGradients, target: Target
    ) -> Callable[[list], tf.Tensor]:
        """A function from a source's shared gradients (one per shared
        variable: a task's, or a group's sum) to its `[n]` affinities
        onto every target."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement source_rows (or matrix)."
        )


_REGISTRY: dict[str, type] = {}


def register_affinity_method(
    name: str, estimator_class: type, *, replace: bool = False
) -> None:
    """Makes `affinity_method=name` measure with `estimator_class`.

    Args:
        name: The method's name, as `TaskAffinityModel(affinity_method=)`,
            `AffinityMeter` and the experiment binaries take it.
        estimator_class: An `AffinityEstimator` subclass.
        replace: Allow replacing a registered method (a built-in one
            included).

    Raises:
        TypeError: `estimator_class` is not an `AffinityEstimator` class.
        ValueError: an empty name, or a registered one without `replace`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(
            "The affinity method's name must be a non-empty "
            f"string. Received: name={name!r}."
        )
    if not (
        isinstance(estimator_class, type)
        and issubclass(estimator_class, AffinityEstimator)
    ):
        raise TypeError(
            "register_affinity_method needs a subclass of "
            "tag_keras.measure.AffinityEstimator. Received: "
            f"estimator_class={estimator_class!r}."
        )
    if name in _REGISTRY and not replace:
        raise ValueError(
            f"The affinity method {name!r} is registered already (by "
            f"{_REGISTRY[name].__name__}); pass replace=True to replace "
            "it."
        )
    _REGISTRY[name] = estimator_class


def affinity_methods() -> tuple[str, ...]:
    """The names `affinity_method=` accepts: built-in and registered."""
    return tuple(_REGISTRY)


def estimator_class(method: str) -> type:
    """The `AffinityEstimator` class registered as `method` (checked)."""
    check_method(method)
    return _REGISTRY[method]


def check_method(affinity_method: str) -> None:
    """Raises `ValueError` unless `affinity_method` is registered: the one
    place a method's name is checked."""
    if not isinstance(affinity_method, str) or (
        affinity_method not in _REGISTRY
    ):
        raise ValueError(
            f"`affinity_method` must be one of {list(_REGISTRY)} (or a "
            "name registered with tag_keras.register_affinity_method). "
            f"Received: affinity_method={affinity_method!r}."
        )


def check_settings(affinity_method, lookahead_step):
    """Raises `ValueError` for an unknown method or tentative step."""
    check_method(affinity_method)
    if lookahead_step not in STEPS:
        raise ValueError(
            f"`lookahead_step` must be one of {list(STEPS)}. Received: "
            f"lookahead_step={lookahead_step!r}."
        )


class TentativeStep:
    """A source's tentative update of the shared weights.

    * `"optimizer"`: the compiled optimizer's real next step, its state
      (momentum, Adam moments, iteration count) included: `θs + Δ(g_i)`.
    * `"sgd"`: the paper's plain step with this step's rate, `θs − lr g_i`
      (what the release's Taskonomy code runs in effect).
    * `"increment"`: the optimizer's step as well, but measured against the
      state-only step `θs + Δ(0)` instead of `θs`, which cancels the move
      every source shares (most of it the momentum velocity).

    Args:
        kind: One of `STEPS`.
        lookahead: The `OptimizerLookahead` of the shared variables.
    """

    def __init__(self, kind, lookahead):
        self.kind, self.lookahead = kind, lookahead

    def values(self, gradients, target):
        """The shared weights after the source's step (`gradients`)."""
        if self.kind == "sgd":
            return self.lookahead.sgd_step(gradients, target.shared_values)
        return self.lookahead.step(gradients)

    def reference_values(self, target):
        """The shared weights the step is compared with: `θs`, or for
        `"increment"` the state-only step `θs + Δ(0)`."""
        if self.kind != "increment":
            return target.shared_values
        return self.lookahead.state_step()

    def reference_losses(self, target, values):
        """The target losses at `reference_values` (one forward pass for
        `"increment"`)."""
        if self.kind != "increment":
            return target.before
        return target.losses_at(values)


class _SteppedEstimator(AffinityEstimator):
    """A method that steps on each source's gradient (`inputs.step`, whose
    lookahead gives the learning rate), so that any summed gradient is a
    source, optionally scaled by the step's learning rate."""

    uses_lookahead = True
    group_sources = True

    def __init__(self, inputs: EstimatorInputs):
        super().__init__(inputs)
        self.step = inputs.step
        self.lookahead = inputs.step.lookahead
        self.scale_by_learning_rate = inputs.scale_by_learning_rate

    def rate(self):
        """The learning rate to divide by, or None (not scaled)."""
        if not self.scale_by_learning_rate:
            return None
        return self.lookahead.learning_rate


class LookaheadEstimator(_SteppedEstimator):
    """TAG: `1 - L_j(θs after a real optimizer step on g_i) / L_j(θs)`.

    Uses `inputs.step` (its lookahead gives the learning rate) and
    `inputs.scale_by_learning_rate`.
    """

    held_out = True

    def source_rows(self, gradients, target):
        """`g -> [n]`: every target's affinity from a source of gradient
        `g` (a group's summed gradient), against this step's reference."""
        del gradients
        before = self.step.reference_losses(
            target, self.step.reference_values(target)
        )

        def row(shared_gradients):
            after = target.losses_at(
                self.step.values(shared_gradients, target)
            )
            return affinity_lib.lookahead_affinity(
                before, ops.expand_dims(after, 0), self.rate()
            )[0]

        return row


class FirstOrderEstimator(_SteppedEstimator):
    """Its Taylor approximation `-<∇L_j, Δθs_i> / L_j`, `Δθs_i` the step.

    No lookahead forward pass: `L_j` and `∇L_j` are at `θs`, also for
    `"increment"`, whose `Δθs_i = Δ(g_i) − Δ(0)`. Uses `inputs.step`
    (each source's step `Δθs_i`), `inputs.optimizer` (its `scale_loss`
    gives the gradients' scale under a loss-scale optimizer) and
    `inputs.scale_by_learning_rate`.
    """

    def __init__(self, inputs: EstimatorInputs):
        super().__init__(inputs)
        self.optimizer = inputs.optimizer

    def source_rows(self, gradients, target):
        """`g -> [n]`: every target's first-order affinity from a source
        of gradient `g` (a group's summed gradient)."""
        scale = self.optimizer.scale_loss(ops.convert_to_tensor(1.0))
        flat = gradients.global_flat() / ops.cast(scale, "float32")
        current = self.step.reference_values(target)

        def row(shared_gradients):
            new_values = self.step.values(shared_gradients, target)
            change = gradients.flatten(
                [n - c for n, c in zip(new_values, current)]
            )
            dots = ops.matmul(flat, change)
            return affinity_lib.first_order_affinity(
                ops.expand_dims(dots, 0), target.before, self.rate()
            )[0]

        return row


class CosineEstimator(AffinityEstimator):
    """The CS baseline: cosine similarity of the shared gradients.

    Uses `inputs.kernels_only`: weight tensors of rank > 1 only (the
    release's choice).
    """

    def __init__(self, inputs: EstimatorInputs):
        super().__init__(inputs)
        self.kernels_only = inputs.kernels_only

    def matrix(self, gradients, target):
        del target
        flat = gradients.global_flat(kernels_only=self.kernels_only)
        gram = ops.matmul(flat, ops.transpose(flat))
        return affinity_lib.cosine_affinity(gram)


register_affinity_method("lookahead", LookaheadEstimator)
register_affinity_method("first_order", FirstOrderEstimator)
register_affinity_method("cosine", CosineEstimator)


def methods_with(attribute: str) -> list[str]:
    """The registered methods whose estimator has `attribute` True
    (`"group_sources"`, `"held_out"`, `"uses_lookahead"`)."""
    return [name for name, cls in _REGISTRY.items() if getattr(cls, attribute)]


def make_estimator(
    method,
    lookahead=None,
    *,
    optimizer=None,
    scale_by_learning_rate=True,
    kernels_only=False,
    step="optimizer",
):
    """The estimator of the registered `method`.

    Args:
        method: A name `affinity_methods()` lists.
        lookahead: A function making the `OptimizerLookahead` of the
            shared variables, called only for a method whose estimator
            `uses_lookahead`.
        optimizer: The optimizer that updates the shared variables.
        scale_by_learning_rate: Divide by this step's learning rate.
        kernels_only: `cosine_kernels_only=`.
        step: One of `STEPS`, each source's tentative update.
    """
    cls = estimator_class(method)
    tentative = (
        TentativeStep(step, lookahead()) if cls.uses_lookahead else None
    )
    return cls(
        EstimatorInputs(
            step=tentative,
            optimizer=optimizer,
            scale_by_learning_rate=scale_by_learning_rate,
            kernels_only=kernels_only,
        )
    )
