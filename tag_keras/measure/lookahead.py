"""The tentative shared update: the real optimizer's next step, on copies.

Keras refuses `optimizer.stateless_apply` on the TensorFlow backend, and
assigning to the model's variables and restoring them afterwards would leave
training corrupted by any exception in between. Instead `OptimizerLookahead`
keeps

* one *shadow* variable per shared model variable, and
* a *clone* of the compiled optimizer (same class, same config, same learning
  rate object) built on the shadow variables,

and makes a lookahead step by copying the model's values into the shadows and
the real optimizer's state (slots such as momentum or Adam moments, and the
iteration count, hence a schedule's learning rate) into the clone, then
calling the clone's own `apply`. The result is the exact update the real
optimizer would make with those gradients; nothing the real optimizer or the
model owns is ever written.
"""

import re

import keras

from tag_keras import _distribute
from tag_keras import _keras_private
from tag_keras._tensorflow import tf

_SHADOW_SCOPE = "tag_shadow_{}"


class OptimizerLookahead:
    """Applies the compiled optimizer's next step to shadow copies.

    Args:
        optimizer: The model's built `keras.optimizers.Optimizer`.
        variables: The model variables (the shared ones) to shadow.

    Example:

    ```python
    lookahead = OptimizerLookahead(model.optimizer, shared_variables)
    new_values = lookahead.step(task_gradients)   # tensors, one per variable
    ```
    """

    def __init__(self, optimizer, variables):
        self.optimizer, self.loss_scale = _unwrap_loss_scale(optimizer)
        if not self.optimizer.built:
            raise ValueError(
                "The optimizer must be built before a lookahead is made on "
                f"it. Received: optimizer={optimizer!r} (not built)."
            )
        if self.optimizer.gradient_accumulation_steps:
            raise ValueError(
                "A lookahead needs one optimizer update per training step, "
                "so gradient accumulation is not supported. Received: "
                "gradient_accumulation_steps="
                f"{self.optimizer.gradient_accumulation_steps}."
            )
        self.variables = list(variables)
        self.shadows = [
            _make_shadow(index, variable)
            for index, variable in enumerate(self.variables)
        ]
        self.clone = _clone_optimizer(self.optimizer, self.variables)
        self.clone.exclude_from_weight_decay(
            var_list=[
                shadow
                for shadow, variable in zip(self.shadows, self.variables)
                if not _keras_private.uses_weight_decay(
                    self.optimizer, variable
                )
            ]
        )
        with keras.name_scope(self.clone.name, caller=self.clone):
            self.clone.build(self.shadows)
        self._state_pairs = _pair_state(
            self.clone, self.optimizer, self.shadows, self.variables
        )

    @property
    def learning_rate(self):
        """This step's learning rate of the real optimizer."""
        return self.optimizer.learning_rate

    def step(self, gradients):
        """The variables' values after one real optimizer step.

        Args:
            gradients: One gradient per variable (`None` counts as zero), as
                passed to the compiled optimizer (scaled by a loss-scale
                optimizer's scale, if there is one).

        Returns:
            A list of tensors, the new values, one per variable.
        """
        _distribute.in_cross_replica_context(self._copy_state)
        gradients = [
            tf.zeros(v.shape, v.dtype) if g is None else g
            for g, v in zip(gradients, self.variables)
        ]
        if self.loss_scale is not None:
            gradients = [g / self.loss_scale for g in gradients]
        self.clone.apply(gradients, self.shadows)
        return [tf.identity(shadow.value) for shadow in self.shadows]

    def sgd_step(self, gradients, values):
        """`values - lr * gradients`: the paper's plain step, this step's lr.

        Args:
            gradients: One gradient per variable (as passed to the compiled
                optimizer: scaled by a loss-scale optimizer's scale).
            values: The variables' current values.
        """
        rate = self.optimizer.learning_rate
        out = []
        for value, g in zip(values, gradients):
            if self.loss_scale is not None:
                g = g / tf.cast(self.loss_scale, g.dtype)
            out.append(
                value - tf.cast(rate, value.dtype) * tf.cast(g, value.dtype)
            )
        return out

    def state_step(self):
        """The values after the optimizer's step on zero gradients: the
        move its state (momentum, Adam moments, weight decay) makes alone."""
        return self.step([None] * len(self.variables))

    def _copy_state(self):
        for shadow, variable in zip(self.shadows, self.variables):
            shadow.assign(variable)
        for clone_variable, real_variable in self._state_pairs:
            clone_variable.assign(real_variable)


def make_lookahead(optimizer, variables, distribution):
    """An `OptimizerLookahead`, created outside any traced function.

    Called while a step is traced: the shadows and the clone's state are
    made eagerly (the optimizer's config is read as Python values), once,
    in `distribution`'s scope and cross-replica context.
    """

    def create():
        with tf.init_scope(), distribution.scope():
            return OptimizerLookahead(optimizer, variables)

    return _distribute.in_cross_replica_context(create)


def _unwrap_loss_scale(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.inner_optimizer, optimizer.dynamic_scale
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            "The lookahead needs a `keras.optimizers.Optimizer`. Received: "
            f"optimizer={optimizer!r} of type {type(optimizer).__name__}."
        )
    return optimizer, None


def _make_shadow(index, variable):
    with keras.name_scope(_SHADOW_SCOPE.format(index)):
        shadow = keras.Variable(
            initializer="zeros",
            shape=variable.shape,
            dtype=variable.dtype,
            trainable=variable.trainable,
            name=variable.name,
        )
    shadow.constraint = variable.constraint
    shadow.overwrite_with_gradient = variable.overwrite_with_gradient
    return shadow


def _clone_optimizer(optimizer, variables):
    clone = optimizer.__class__.from_config(optimizer.get_config())
    # Share the learning-rate object itself (a Variable that callbacks such
    # as ReduceLROnPlateau assign to, or a schedule evaluated at the copied
    # iteration count), so the clone always uses this step's rate.
    _keras_private.share_learning_rate(clone, optimizer)
    return clone


def _pair_state(clone, optimizer, shadows, variables):
    """Pairs each clone variable with the real optimizer variable it mirrors.

    A slot's name starts with its variable's prefix
    (`_keras_private.slot_prefix`), so a clone slot of shadow k maps to
    the real slot of variable k with the same suffix. Non-slot state
    (the iteration count, ...) maps by name.
    """
    real_by_name = {}
    for real in optimizer.variables:
        real_by_name.setdefault(real.name, []).append(real)
    prefixes = [
        (
            re.escape(_keras_private.slot_prefix(shadow)),
            _keras_private.slot_prefix(variable),
        )
        for shadow, variable in zip(shadows, variables)
    ]
    pairs = []
    for clone_variable in clone.variables:
        name = clone_variable.name
        if name == "learning_rate":
            continue  # shared, see `_clone_optimizer`
        target = name
        for shadow_prefix, real_prefix in prefixes:
            match = re.match(shadow_prefix, name)
            if match:
                target = real_prefix + name[match.end() :]
                break
        candidates = real_by_name.get(target, [])
        candidates = [
            real
            for real in candidates
            if tuple(real.shape) == tuple(clone_variable.shape)
            and real.dtype == clone_variable.dtype
        ]
        if len(candidates) != 1:
            raise NotImplementedError(
                f"Cannot make a lookahead step with optimizer "
                f"{type(optimizer).__name__}: its state variable "
                f"{clone_variable.name!r} has "
                f"{'no' if not candidates else 'several'} counterpart(s) named "
                f"{target!r} in the compiled optimizer. Optimizers whose "
                "per-variable state is created with "
                "`add_variable_from_reference` are supported."
            )
        pairs.append((clone_variable, candidates[0]))
    return pairs
