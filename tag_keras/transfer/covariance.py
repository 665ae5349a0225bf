"""Task covariance similarity (Wu, Zhang and Ré, ICLR 2020, eq. 6)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import numpy as np

if TYPE_CHECKING:  # for annotations only
    import keras
    import pandas as pd


def covariance_similarity(
    x_a: np.ndarray, x_b: np.ndarray, energy: float = 0.99
) -> float:
    """How much two tasks' inputs live in the same subspace, in [0, 1].

    For each matrix X (rows = examples, columns = features), the
    covariance XᵀX = U D Uᵀ is cut to its best rank-r part U_r D_r U_rᵀ,
    with r the smallest rank whose eigenvalues hold `energy` of their sum;
    with F = U_r D_r^{1/2},

        score = ‖F_aᵀ F_b‖_F / (‖F_a‖_F · ‖F_b‖_F).

    It does not change when both matrices' columns are rotated by the same
    orthogonal matrix, when either's rows are rotated or permuted, or when
    either is scaled. Two tasks with the same covariance score
    ‖D_r‖_F / tr(D_r) (1 when the covariance has rank one); orthogonal
    subspaces score 0.

    Args:
        x_a: An `[examples, features]` array.
        x_b: Another, with the same number of columns (the number of rows
            may differ).
        energy: The share of the eigenvalue sum the rank keeps, in (0, 1].

    Returns:
        The score, a float.

    References:
        Wu, Zhang and Ré, "Understanding and Improving Information
        Transfer in Multi-Task Learning", ICLR 2020, section 3.2.
    """
    _check_energy(energy)
    x_a = _matrix(x_a, "x_a")
    x_b = _matrix(x_b, "x_b")
    if x_a.shape[1] != x_b.shape[1]:
        raise ValueError(
            "`x_a` and `x_b` must have the same number of columns "
            f"(features). Received: x_a with {x_a.shape[1]} columns, x_b "
            f"with {x_b.shape[1]}."
        )
    f_a, f_b = factor(x_a, energy), factor(x_b, energy)
    norm = np.linalg.norm(f_a) * np.linalg.norm(f_b)
    if norm == 0:
        raise ValueError(
            "A matrix of zeros has no covariance subspace. "
            "Received: x_a or x_b all zeros."
        )
    return float(np.linalg.norm(f_a.T @ f_b) / norm)


def factor(x, energy=0.99):
    """F = U_r D_r^{1/2} of the best rank-r part of XᵀX (see above)."""
    _check_energy(energy)
    # The right singular vectors of X are XᵀX's eigenvectors, its squared
    # singular values the eigenvalues.
    _, singular, vt = np.linalg.svd(_matrix(x, "x"), full_matrices=False)
    eigen = singular**2
    total = eigen.sum()
    if total == 0:
        return np.zeros((vt.shape[1], 1))
    rank = int(np.searchsorted(np.cumsum(eigen) / total, energy - 1e-12)) + 1
    rank = min(rank, len(eigen))
    return vt[:rank].T * singular[:rank]


def task_covariance_similarity(
    model: keras.Model,
    data: Any,
    layer: str | None = None,
    energy: float = 0.99,
    max_samples: int = 2048,
) -> pd.DataFrame:
    """`covariance_similarity` between every two tasks of a model.

    Each task's matrix holds its own examples (those whose label for it is
    not NaN; at most `max_samples`) at the input of the shared module, or
    at the output of the layer named `layer`, flattened per example.

    Args:
        model: A Keras model whose outputs are a dict keyed by task.
        data: `(x, y)` arrays, a batched `tf.data.Dataset` or a PyDataset,
            `y` keyed by task.
        layer: None for the model's input (one input only), or the name of
            the layer whose output is compared.
        energy: As `covariance_similarity`.
        max_samples: Examples per task.

    Returns:
        A symmetric DataFrame, index and columns = task.
    """
    from tag_keras import _keras_private

    _keras_private.check_backend(what="task_covariance_similarity")
    import keras
    import pandas as pd
    from keras import tree

    from tag_keras import _data
    from tag_keras.tasks import labels as labels_lib

    _check_energy(energy)
    outputs = _output_names(model)
    if layer is None:
        if len(model.inputs) != 1:
            raise ValueError(
                "A model with several inputs needs `layer=` naming the layer "
                "whose output to compare. Received: layer=None."
            )
        features = None
    else:
        names = [lay.name for lay in model.layers]
        if layer not in names:
            raise ValueError(
                f"Unknown layer {layer!r}; the model's layers: "
                f"{names}. Received: layer={layer!r}."
            )
        features = keras.Model(model.input, model.get_layer(layer).output)
    factors = {}
    for task in outputs:
        x, _ = labels_lib.task_examples(data, outputs, task, max_samples)
        if features is not None:
            x = _data.map_batches(
                lambda part: features(part, training=False), x
            )
        x = np.asarray(tree.flatten(x)[0])
        factors[task] = factor(x.reshape(len(x), -1), energy)
    scores = np.ones((len(outputs), len(outputs)))
    for i, a in enumerate(outputs):
        for j, b in enumerate(outputs):
            f_a, f_b = factors[a], factors[b]
            norm = np.linalg.norm(f_a) * np.linalg.norm(f_b)
            scores[i, j] = (
                np.linalg.norm(f_a.T @ f_b) / norm if norm else np.nan
            )
    return pd.DataFrame(
        scores, index=pd.Index(outputs, name="task"), columns=outputs
    )


def _output_names(model):
    from tag_keras import _keras_private

    structure = _keras_private.functional_outputs(model)
    if isinstance(structure, dict):
        return list(structure)
    raise TypeError(
        "task_covariance_similarity needs a functional model whose outputs "
        "are a dict keyed by task. Received: a model with outputs of type "
        f"{type(structure).__name__}."
    )


def _matrix(x, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or not x.size:
        raise ValueError(
            f"`{name}` must be a non-empty 2-D array "
            f"[examples, features]. Received: {name} with shape "
            f"{x.shape}."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{name}` has NaN or infinite entries.")
    return x


def _check_energy(energy):
    if (
        isinstance(energy, bool)
        or not isinstance(energy, (int, float, np.floating))
        or not 0 < energy <= 1
    ):
        raise ValueError(
            "`energy` must be in (0, 1] (the share of the "
            f"eigenvalue sum kept). Received: energy={energy!r}."
        )
