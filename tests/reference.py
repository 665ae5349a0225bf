"""NumPy reference implementations for the exactness tests.

A linear multi-task model `y_t = x @ W @ v_t` with MSE losses, trained by
NumPy copies of Keras's update rules, measuring TAG affinity by hand.
"""

import keras
import numpy as np

import tag_keras

TASKS = ("a", "b", "c")


class NumpyOptimizer:
    """Keras's update rules for one variable, in float64."""

    def __init__(self, kind, learning_rate, **config):
        self.kind = kind
        self.learning_rate = learning_rate
        self.config = config
        self.iterations = 0
        self.slots = {}

    def copy(self):
        other = NumpyOptimizer(self.kind, self.learning_rate, **self.config)
        other.iterations = self.iterations
        other.slots = {
            k: {n: a.copy() for n, a in v.items()}
            for k, v in self.slots.items()
        }
        return other

    def rate(self):
        lr = self.learning_rate
        return lr(self.iterations) if callable(lr) else lr

    def update(self, name, value, grad):
        """Returns the new value of variable `name` (does not count a step)."""
        lr, c = self.rate(), self.config
        s = self.slots.setdefault(name, {})
        value = value.copy()
        if c.get("weight_decay"):
            value = value - value * c["weight_decay"] * lr
        if self.kind == "sgd":
            momentum = c.get("momentum", 0.0)
            if not momentum:
                return value - lr * grad
            m = s.setdefault("m", np.zeros_like(value))
            m[...] = m * momentum - grad * lr
            if c.get("nesterov"):
                return value + m * momentum - grad * lr
            return value + m
        if self.kind == "adam":
            b1, b2, eps = c["beta_1"], c["beta_2"], c["epsilon"]
            t = self.iterations + 1
            alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
            m = s.setdefault("m", np.zeros_like(value))
            v = s.setdefault("v", np.zeros_like(value))
            m += (grad - m) * (1 - b1)
            v += (grad**2 - v) * (1 - b2)
            return value - m * alpha / (np.sqrt(v) + eps)
        if self.kind == "rmsprop":
            rho, eps = c["rho"], c["epsilon"]
            v = s.setdefault("v", np.zeros_like(value))
            v[...] = rho * v + (1 - rho) * grad**2
            return value - lr * grad / np.sqrt(v + eps)
        raise ValueError(self.kind)


def losses_and_grads(x, y, weights):
    """Per-task MSE losses and gradients of `y_t = x W v_t`."""
    shared, heads = weights["W"], weights["heads"]
    hidden = x @ shared
    losses, grad_shared, grad_heads = {}, {}, {}
    for task, v in heads.items():
        err = hidden @ v - y[task]
        losses[task] = float(np.mean(err**2))
        d_out = 2.0 * err / err.size
        grad_heads[task] = hidden.T @ d_out
        grad_shared[task] = x.T @ (d_out @ v.T)
    return losses, grad_shared, grad_heads


def _tentative(optimizer, shared, grad, step_kind):
    """The shared weights after a source's tentative step."""
    if step_kind == "sgd":
        return shared - optimizer.rate() * grad
    return optimizer.copy().update("W", shared, grad)


def _affinity(xb, yb, weights, losses, g_shared, optimizer, step_kind,
              method, sources=None, target=None):
    """One step's `[sources, n]` matrix, before any learning-rate scaling.

    `sources` are tuples of task names (a group's gradient is the sum of
    its tasks'); by default each task alone, giving the `[n, n]` matrix.
    `target`, a held-out batch `(x, y)`, is where the targets' losses (and,
    first-order, their gradients) are measured; the sources' gradients
    stay the training batch's.
    """
    tasks = list(weights["heads"])
    sources = [(t,) for t in tasks] if sources is None else sources
    g_source = g_shared
    if target is not None:
        xb, yb = target
        losses, g_shared, _ = losses_and_grads(xb, yb, weights)
    reference, before = weights["W"], losses
    if step_kind == "increment":
        reference = optimizer.copy().update(
            "W", weights["W"], np.zeros_like(weights["W"]))
        if method == "lookahead":
            before, _, _ = losses_and_grads(
                xb, yb, {"W": reference, "heads": weights["heads"]})
    z = np.zeros((len(sources), len(tasks)))
    for i, source in enumerate(sources):
        shared = _tentative(optimizer, weights["W"],
                            sum(g_source[t] for t in source), step_kind)
        if method == "first_order":
            for j, target in enumerate(tasks):
                z[i, j] = -np.sum(g_shared[target] * (shared - reference)) / (
                    losses[target])
            continue
        after, _, _ = losses_and_grads(
            xb, yb, {"W": shared, "heads": weights["heads"]})
        for j, target in enumerate(tasks):
            z[i, j] = 1.0 - after[target] / before[target]
    return z


def train_and_measure(x, y, weights, optimizer, batch_size, steps,
                      scale_by_learning_rate, every=1, step_kind="optimizer",
                      method="lookahead", sources=None, held_out=None):
    """Trains with summed gradients; returns per-step affinity matrices.

    `step_kind` is `TaskAffinityModel(lookahead_step=...)`, `method` its
    `affinity_method` ("lookahead" or "first_order"); `sources` the
    groups stepped on (tuples of task names; default each task alone), or
    a function of the step number giving them. `held_out`, `(x, y,
    batch_size)`, is `affinity_data`: each measured step takes its next
    batch, in order and cycled, for the targets.

    Returns:
        `(matrices, weights)`: `matrices[step]` is an `[n, n]` array for every
        measured step, `weights` the final weights.
    """
    tasks = list(weights["heads"])
    weights = {
        "W": weights["W"].astype(np.float64).copy(),
        "heads": {t: v.astype(np.float64).copy()
                  for t, v in weights["heads"].items()},
    }
    matrices = {}
    n_batches = int(np.ceil(len(x) / batch_size))
    for step in range(steps):
        b = step % n_batches
        xb = x[b * batch_size:(b + 1) * batch_size].astype(np.float64)
        yb = {t: v[b * batch_size:(b + 1) * batch_size] for t, v in y.items()}
        losses, g_shared, g_heads = losses_and_grads(xb, yb, weights)
        if every and step % every == 0:
            target = None
            if held_out is not None:
                xh, yh, size = held_out
                k = len(matrices) % int(np.ceil(len(xh) / size))
                target = (xh[k * size:(k + 1) * size].astype(np.float64),
                          {t: v[k * size:(k + 1) * size]
                           for t, v in yh.items()})
            z = _affinity(xb, yb, weights, losses, g_shared, optimizer,
                          step_kind, method,
                          sources(step) if callable(sources) else sources,
                          target)
            if scale_by_learning_rate:
                z /= optimizer.rate()
            matrices[step] = z
        total_shared = sum(g_shared[t] for t in tasks)
        weights["W"] = optimizer.update("W", weights["W"], total_shared)
        for t in tasks:
            weights["heads"][t] = optimizer.update(
                t, weights["heads"][t], g_heads[t]
            )
        optimizer.iterations += 1
    return matrices, weights


def data(seed=0, n=12, d=3):
    """Inputs, labels and initial weights of the linear model."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = {t: rng.normal(size=(n, 1)).astype("float32") for t in TASKS}
    weights = {
        "W": rng.normal(size=(d, 2)).astype("float32") * 0.5,
        "heads": {t: rng.normal(size=(2, 1)).astype("float32")
                  for t in TASKS},
    }
    return x, y, weights


def linear_model(weights, **kwargs):
    """`TaskAffinityModel` computing `x @ W @ v_t`, set to `weights`."""
    inputs = keras.Input((weights["W"].shape[0],))
    hidden = keras.layers.Dense(2, use_bias=False, name="shared")(inputs)
    outputs = {
        t: keras.layers.Dense(1, use_bias=False, name=f"head_{t}")(hidden)
        for t in TASKS
    }
    model = tag_keras.TaskAffinityModel(
        inputs=inputs, outputs=outputs, **kwargs
    )
    model.get_layer("shared").set_weights([weights["W"]])
    for t in TASKS:
        model.get_layer(f"head_{t}").set_weights([weights["heads"][t]])
    return model
