"""Which trainable variables are shared: found from the tasks' gradients.

A variable is shared when the losses of two or more tasks depend on it
(a gradient that is not `None`), or when it belongs to a layer named in
`shared_layers`. The training step and the diagnostics both find them
here, from one tape of the forward pass and the per-task losses.
"""

import warnings

from tag_keras import _keras_private


class SharedVariables:
    """Indices into `model.trainable_variables`, found at the first trace.

    Attributes:
        connected: Variables that receive any gradient (the optimizer
            updates only these, as Keras does for a `None` gradient).
        shared: Variables shared by the tasks: those two or more task
            losses depend on, or the weights of `shared_layers` when given.
        kernels: For each shared variable, whether it is a kernel (rank of
            two or more), for the cosine baseline's `kernels_only`.
        attached: For each task, whether its loss depends on any shared
            variable (a head that bypasses the shared weights does not).
        heads: The connected variables that are not shared (task heads).
        per_task: For each task, the variables its loss depends on (θ_k:
            the shared ones it reaches and its head).
    """

    def __init__(self, connected, shared, kernels, attached, per_task=None):
        self.connected, self.shared, self.kernels = connected, shared, kernels
        self.attached = attached
        self.per_task = per_task
        self.heads = [k for k in connected if k not in set(shared)]

    def pick(self, values, which="shared"):
        """The entries of a list over all trainable variables."""
        return [values[k] for k in getattr(self, which)]


def discover(model, tape, scaled, scaled_extra, tasks, shared_layers=None):
    """Finds the connected and shared variables from one step's tape.

    Args:
        model: The model; `model.trainable_variables` is indexed.
        tape: A persistent tape of the forward pass and losses.
        scaled: `{task: scaled loss}`.
        scaled_extra: The scaled sum of `add_loss` terms, or None.
        tasks: The task names.
        shared_layers: Optional layer names whose weights are shared.
    """
    variables = model.trainable_variables
    depends = [
        [g is not None for g in tape.gradient(scaled[t], variables)]
        for t in tasks
    ]
    extra = None
    if scaled_extra is not None:
        extra = [g is not None for g in tape.gradient(scaled_extra, variables)]
    return from_dependencies(model, depends, extra, shared_layers)


def from_dependencies(model, depends, extra=None, shared_layers=None):
    """The `SharedVariables` of `depends[t][k]`: whether task t's loss
    depends on trainable variable k (`extra[k]`: whether the `add_loss`
    terms do; None for none), as any backend finds it."""
    variables = model.trainable_variables
    extra = extra or [False] * len(variables)
    connected = [
        k
        for k in range(len(variables))
        if extra[k] or any(d[k] for d in depends)
    ]
    if shared_layers is not None:
        ids = layer_variable_ids(model, shared_layers)
        shared = [k for k, v in enumerate(variables) if id(v) in ids]
    else:
        shared = [
            k for k in range(len(variables)) if sum(d[k] for d in depends) >= 2
        ]
    kernels = [len(variables[k].shape) >= 2 for k in shared]
    attached = [any(d[k] for k in shared) for d in depends]
    per_task = [[k for k, used in enumerate(d) if used] for d in depends]
    return SharedVariables(connected, shared, kernels, attached, per_task)


def check_found(found, tasks, measuring, needed=True):
    """Raises if `needed` and no variable is shared; warns, when
    `measuring`, about tasks whose loss bypasses the shared weights."""
    if needed and not found.shared:
        if len(tasks) < 2:
            raise ValueError(
                "Affinity and multi-task training methods need at least two "
                f"tasks. Received: task_names={list(tasks)}."
            )
        raise ValueError(
            "Affinity needs weights shared by two or more tasks, and no "
            "trainable weight has a gradient from two task losses. Pass "
            "`shared_layers=[...]` or share an encoder. Received: tasks "
            f"{list(tasks)}."
        )
    detached = [t for t, a in zip(tasks, found.attached) if not a]
    if measuring and detached:
        warnings.warn(
            f"Tasks {detached} do not depend on the shared weights (their "
            "heads bypass them), so a shared step cannot change their "
            "loss nor theirs the others': their rows and columns of the "
            "affinity matrix are left out (NaN), not reported as zeros.",
            stacklevel=3,
        )


def check_layer_names(model, names):
    """Raises if `names` (the `shared_layers` argument) are not layers."""
    known = [layer.name for layer in _keras_private.flat_layers(model)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"`shared_layers` names layers the model does not have: "
            f"{unknown}. Valid layer names: {known}. Received: "
            f"shared_layers={list(names)}."
        )


def layer_variable_ids(model, names):
    """`id`s of the trainable variables of the layers called `names`."""
    check_layer_names(model, names)
    ids = set()
    for layer in _keras_private.flat_layers(model):
        if layer.name in names:
            ids.update(id(v) for v in layer.trainable_variables)
    return ids
