"""Times `select_groups` on realistic random affinity matrices.

There is no copy of the original 9-task CelebA affinities, so the matrices
are generated with a similar structure: values of order 1e-3..1e-1 (after
the release's division by the learning rate they are larger, but the scale
does not matter to the selector), tasks in a few clusters that help each
other, a little noise, some negative transfer. Up to 16 tasks the dynamic
program solves it; beyond (40: every CelebA attribute), column generation
with branch-and-bound pricing proves the optimum or stops at
`--search_seconds` with the best bound proven.

    python -m experiments.benchmarks.select_benchmark
    python -m experiments.benchmarks.select_benchmark \
        --task_counts=9,16,20,24,32,40 --group_counts=2,3,4 \
        --matrix_seeds=0 --search_seconds=60
"""

import time

from absl import app
from absl import flags
import numpy as np
import pandas as pd

from tag_keras.select import grouping

_TASKS = flags.DEFINE_list("task_counts", ["9", "16", "40"], "Task counts.")
_NUM_GROUPS = flags.DEFINE_list("group_counts", ["2", "3", "4"],
                                "Budgets (numbers of groups).")
_SEEDS = flags.DEFINE_list("matrix_seeds", ["0", "1", "2"], "Matrix seeds.")
_TIME_LIMIT = flags.DEFINE_float("search_seconds", None, "Seconds per "
                                 "selection beyond the dynamic program.",
                                 lower_bound=0.0)


def realistic_affinity(n, seed):
    """Clustered affinities: within-cluster help, mild cross-cluster harm."""
    rng = np.random.default_rng(seed)
    clusters = rng.integers(max(2, n // 5), size=n)
    same = clusters[:, None] == clusters[None, :]
    strength = rng.lognormal(np.log(0.01), 0.5, size=n)  # Per-source scale.
    z = np.where(same, 3.0, -0.3)[...] * strength[:, None]
    z += rng.normal(0.0, 0.01, size=(n, n))
    np.fill_diagonal(z, 0.05 + rng.uniform(0.0, 0.05, size=n))
    names = [f"task{i:02d}" for i in range(n)]
    return pd.DataFrame(z, index=names, columns=names)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    print("tasks  budget  seed  seconds  method             score      "
          "upper_bound  gap     proven")
    for n in map(int, _TASKS.value):
        for seed in map(int, _SEEDS.value):
            affinity = realistic_affinity(n, seed)
            for budget in map(int, _NUM_GROUPS.value):
                start = time.perf_counter()
                result = grouping.select_groups(
                    affinity, budget, time_limit=_TIME_LIMIT.value)
                seconds = time.perf_counter() - start
                relative = result.gap / abs(result.upper_bound)
                print(f"{n:5d}  {budget:6d}  {seed:4d}  {seconds:7.3f}  "
                      f"{result.method:17s}  {result.score:.6f}  "
                      f"{result.upper_bound:.6f}     {relative:6.1%}  "
                      f"{'yes' if result.optimal else 'NO'}")


if __name__ == "__main__":
    app.run(main)
