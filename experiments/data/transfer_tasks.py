"""Synthetic tasks with a known answer for the information-transfer tools.

The setting of Wu, Zhang and Ré (ICLR 2020), section 2.2: task i has its
own inputs X_i = R_i D_i Q_iᵀ (n_i × d; the paper writes R_i Q_i D_i)
with R_i Gaussian, Q_i orthonormal and D_i diagonal with κ (100) on d/10
coordinates and 1 elsewhere, so that X_iᵀX_i ≈ n_i Q_i D_i² Q_iᵀ; and
labels from a task model β_i:

* `"linear"`: y = X β + ε,
* `"relu"`: y = max(X β, 0) + ε,
* `"logistic"`: y ∼ Bernoulli(σ(X β)) (no ε),

with ε ∼ N(0, noise²) and X β scaled to unit variance over the population,
so that the noise level means the same for every covariance.

Pairs (a source and a target task) control the two things the paper
separates: whether the task models agree (`same_model`), and how similar
the covariances are: the target's large coordinates overlap the source's
in a fraction `overlap` of them (1: equal covariances, 0: disjoint), and
`rotate=True` gives the target inputs a random rotation of the source's
covariance (what covariance alignment can undo).

May import NumPy and SciPy only.
"""

import dataclasses

import numpy as np
from scipy import stats

KINDS = ("linear", "relu", "logistic")


@dataclasses.dataclass(frozen=True)
class SyntheticTask:
    """One generated task: train and test arrays and how they were made.

    Attributes:
        x_train, y_train, x_test, y_test: `[n, d]` inputs, `[n]` labels
            (float; 0/1 for `"logistic"`).
        beta: The task model `[d]`.
        basis: Q (d × d, orthonormal) and `scales`: the diagonal of D.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    beta: np.ndarray
    basis: np.ndarray
    scales: np.ndarray


def task_pair(*, d=100, kind="linear", source_samples=2000,
              target_samples=200, test_samples=2000, overlap=1.0,
              same_model=True, rotate=False, kappa=100.0, noise=0.5,
              seed=0):
    """A source and a target task (see the module docstring).

    Args:
        d: Input dimension (100 in the paper).
        kind: One of `KINDS`.
        source_samples, target_samples, test_samples: n per split.
        overlap: Share of the target's κ-coordinates that are the
            source's, in [0, 1].
        same_model: The target uses the source's β (else an independent
            one).
        rotate: Rotate the target's inputs by a random orthogonal matrix
            (and its β with them, so that the task is the same up to the
            rotation).
        kappa: The large diagonal entry of D.
        noise: Standard deviation of ε (linear, relu).
        seed: Seed of everything drawn.

    Returns:
        `(source, target)`: two `SyntheticTask`s.
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}. Received: "
                         f"kind={kind!r}.")
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"`overlap` must be in [0, 1]. Received: "
                         f"overlap={overlap!r}.")
    rng = np.random.default_rng(seed)
    large = max(1, d // 10)
    basis = stats.ortho_group.rvs(d, random_state=rng)
    source_scales = _scales(d, np.arange(large), kappa)
    shared = int(round(overlap * large))
    others = rng.choice(np.arange(large, d), size=large - shared,
                        replace=False)
    target_scales = _scales(d, np.concatenate([np.arange(shared), others]),
                            kappa)
    beta = rng.normal(size=d)
    target_beta = beta if same_model else rng.normal(size=d)
    target_basis = basis
    if rotate:
        # x_target = x @ rotation for x drawn like the source's inputs.
        rotation = stats.ortho_group.rvs(d, random_state=rng)
        target_basis = rotation.T @ basis
        target_beta = rotation.T @ target_beta
    source = _task(rng, kind, basis, source_scales, beta, source_samples,
                   test_samples, noise)
    target = _task(rng, kind, target_basis, target_scales, target_beta,
                   target_samples, test_samples, noise)
    return source, target


def _scales(d, large, kappa):
    scales = np.ones(d)
    scales[large] = kappa
    return scales


def _task(rng, kind, basis, scales, beta, samples, test_samples, noise):
    # Rows x = r D Qᵀ with r standard Gaussian: E[xᵀx] = Q D² Qᵀ.
    mixing = scales[:, None] * basis.T
    population = np.sqrt(np.sum((mixing @ beta) ** 2))
    direction = beta / population

    def draw(n):
        x = rng.normal(size=(n, len(beta))) @ mixing
        signal = x @ direction
        if kind == "logistic":
            y = (rng.random(n) < 1.0 / (1.0 + np.exp(-4.0 * signal)))
            return x, y.astype(np.float64)
        if kind == "relu":
            signal = np.maximum(signal, 0.0)
        return x, signal + noise * rng.normal(size=n)

    x_train, y_train = draw(samples)
    x_test, y_test = draw(test_samples)
    scale = np.sqrt(np.mean(x_train ** 2))
    return SyntheticTask(
        (x_train / scale).astype(np.float32), y_train.astype(np.float32),
        (x_test / scale).astype(np.float32), y_test.astype(np.float32),
        direction * scale, basis, scales)
