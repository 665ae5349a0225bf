"""Every use of a private Keras or JAX API on Keras's JAX backend.

The JAX twin of `_keras_private`: the measured step of
`TaskAffinityModel` on JAX (`tag_keras.measure.jax_step`) reaches these,
and nothing else does. Each has a guard test (tests/test_jax_backend.py)
that fails when the Keras or JAX version changes what it relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax


def update_metrics(model, metrics_variables, loss, x, y, y_pred, weights):
    """`(logs, metrics_variables)` after one step, as Keras's JAX train
    step computes them (the loss tracker and the compiled metrics).

    Reason: `JAXTrainer._update_metrics_variables` is the private helper
    Keras's own `train_step` calls; a public route would copy it.
    """
    return model._update_metrics_variables(
        metrics_variables, loss, x, y, y_pred, weights
    )


def stateless_forward(model, trainable, non_trainable, x):
    """`(outputs, new non-trainable values, add_loss terms)` of a forward
    pass in training mode from the given state.

    Reason: whether `call` takes `training` is Keras's private
    `_call_has_training_arg`, as in Keras's own JAX step.
    """
    kwargs = {"training": True} if model._call_has_training_arg else {}
    return model.stateless_call(
        trainable, non_trainable, x, return_losses=True, **kwargs
    )


def used_inputs(function: Callable, arguments: Sequence[Any]) -> list[bool]:
    """For each array of `arguments` (a flat list), whether the scalar
    `function(arguments)` depends on it.

    JAX's gradients are zeros, not None, where a loss does not depend on a
    variable, so dependence is read from the traced program instead: a
    backward pass over the equations of `jax.make_jaxpr(function)`, marking
    what each needed output reads (every input of an equation whose output
    is needed; a nested jaxpr, as `jit` makes, is followed inside).

    Reason: jaxpr equations (`eqn.invars`, `eqn.outvars`, `eqn.params`)
    are JAX internals, though stable in use.
    """
    closed = jax.make_jaxpr(function)(list(arguments))
    jaxpr = closed.jaxpr
    needed = _needed(jaxpr, [True] * len(jaxpr.outvars))
    return needed


def _is_var(atom):
    return not hasattr(atom, "val")  # a Literal has a value, a Var not


def _needed(jaxpr, outputs_needed):
    """Which invars of `jaxpr` the needed outvars depend on."""
    live = set()
    for var, wanted in zip(jaxpr.outvars, outputs_needed):
        if wanted and _is_var(var):
            live.add(var)
    for eqn in reversed(jaxpr.eqns):
        wanted = [_is_var(v) and v in live for v in eqn.outvars]
        if not any(wanted):
            continue
        inner = eqn.params.get("jaxpr")
        inner = getattr(inner, "jaxpr", inner)
        if inner is not None and len(inner.invars) == len(eqn.invars):
            reads = _needed(inner, wanted)
        else:
            reads = [True] * len(eqn.invars)
        live.update(
            v for v, read in zip(eqn.invars, reads) if read and _is_var(v)
        )
    return [v in live for v in jaxpr.invars]
