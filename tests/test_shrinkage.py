"""Affinities shrunk toward each target's mean, against hand computation."""

import numpy as np
import pandas as pd
import pytest

from tag_keras.select import shrinkage

Z = np.array([[0.0, 1.0, 2.0],
              [3.0, 0.0, 4.0],
              [5.0, 6.0, 0.0]])


def test_equal_noise_halves_the_distance_to_the_mean():
    # Target 0: sources 3 and 5, mean 4, variance 2; noise 1 leaves a
    # spread of 1, so each entry moves half way to the mean.
    out = shrinkage.shrink(Z, np.ones((3, 3)))
    np.testing.assert_allclose(out[[1, 2], 0], [3.5, 4.5])


def test_no_noise_changes_nothing_and_all_noise_gives_the_mean():
    np.testing.assert_allclose(shrinkage.shrink(Z, np.zeros((3, 3))), Z)
    # Noise 16 exceeds every column's variance (2, 12.5 and 2).
    out = shrinkage.shrink(Z, np.full((3, 3), 4.0))
    np.testing.assert_allclose(out[[1, 2], 0], [4.0, 4.0])
    np.testing.assert_allclose(out[[0, 2], 1], [3.5, 3.5])
    np.testing.assert_allclose(out[[0, 1], 2], [3.0, 3.0])
    np.testing.assert_allclose(np.diag(out), np.diag(Z))


def test_noisier_entries_move_further():
    se = np.ones((3, 3))
    se[0, 1], se[2, 1] = 0.5, 3.0
    out = shrinkage.shrink(Z, se)
    # Target 1: sources 1 and 6, mean 3.5, variance 12.5, noise 0.25 and 9:
    # spread 12.5 - 4.625 = 7.875.
    np.testing.assert_allclose(
        out[[0, 2], 1], [3.5 - 7.875 / 8.125 * 2.5,
                         3.5 + 7.875 / 16.875 * 2.5])


def test_block_standard_errors_by_hand():
    values = np.zeros((4, 3, 3))
    values[:, 0, 1] = [1, 3, 5, 7]
    values[:, 0, 2] = [1, np.nan, np.nan, np.nan]
    mean, se = shrinkage.block_standard_errors(values, block_size=2)
    # Block means 2 and 6: variance 8 over two blocks, SE sqrt(8 / 2).
    assert mean[0, 1] == 4.0 and se[0, 1] == pytest.approx(2.0)
    # One measured block: no standard error.
    assert mean[0, 2] == 1.0 and np.isnan(se[0, 2])


def test_shrunk_affinity_reads_the_per_step_table():
    rng = np.random.default_rng(0)
    tasks = ["a", "b", "c", "d"]
    rows = [{"step": s, "source": i, "target": j,
             "affinity": rng.normal(0.1 * k, 1.0)}
            for s in range(27) for k, (i, j) in enumerate(
                (i, j) for i in tasks for j in tasks if i != j)]
    steps = pd.DataFrame(rows)
    out = shrinkage.shrunk_affinity(steps, tasks)
    assert list(out.index) == tasks and list(out.columns) == tasks
    _, values = shrinkage.stability.step_matrices(steps, tasks)
    mean, se = shrinkage.block_standard_errors(values)
    np.testing.assert_allclose(out.to_numpy(), shrinkage.shrink(mean, se))
    # Shrinking never moves an entry past its target's mean.
    for j in range(4):
        others = [i for i in range(4) if i != j]
        centre = mean[others, j].mean()
        assert np.all(np.abs(out.to_numpy()[others, j] - centre)
                      <= np.abs(mean[others, j] - centre) + 1e-12)


@pytest.mark.parametrize("z, se, message", [
    (np.zeros((3, 2)), np.zeros((3, 2)), "square"),
    (np.zeros((2, 2)), np.zeros((2, 2)), "at least 3 tasks"),
    (Z, np.where(np.eye(3), 0, np.nan), "standard error"),
    (np.where(np.eye(3), 0, np.nan), np.ones((3, 3)), "finite"),
])
def test_bad_input_is_refused(z, se, message):
    with pytest.raises(ValueError, match=message):
        shrinkage.shrink(z, se)
