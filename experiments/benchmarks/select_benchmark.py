"""Times `select_groups` on realistic random affinity matrices.

With `--objective=group_affinity`, `select_groups_from_group_affinity`
instead, on group affinities drawn around the same matrices: every single
task, the all-task group and `--extra_sources` random groups measured as
sources onto every target, Z(S→a) = c_a + Σ_{b ∈ S∖a} z[b, a] minus a
second-order term growing with |S|², plus noise (so not additive: the
surrogate does not fit the measured groups exactly). Up to 14 tasks the
exact table; beyond, column generation.

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
    python -m experiments.benchmarks.select_benchmark \
        --objective=group_affinity --task_counts=9,16,20,24,32,40 \
        --matrix_seeds=0 --search_seconds=60
"""

import time

from absl import app
from absl import flags
import numpy as np
import pandas as pd

from tag_keras.select import group_affinity
from tag_keras.select import grouping

_TASKS = flags.DEFINE_list("task_counts", ["9", "16", "40"], "Task counts.")
_NUM_GROUPS = flags.DEFINE_list("group_counts", ["2", "3", "4"],
                                "Budgets (numbers of groups).")
_SEEDS = flags.DEFINE_list("matrix_seeds", ["0", "1", "2"], "Matrix seeds.")
_TIME_LIMIT = flags.DEFINE_float("search_seconds", None, "Seconds per "
                                 "selection beyond the dynamic program.",
                                 lower_bound=0.0)
_OBJECTIVE = flags.DEFINE_enum(
    "objective", "affinity", ["affinity", "group_affinity"],
    "Pair affinities (select_groups) or group affinities "
    "(select_groups_from_group_affinity).")
_EXTRA = flags.DEFINE_integer(
    "extra_sources", 8, "Group affinity: random group sources measured "
    "besides the single tasks and the all-task group.", lower_bound=0)


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


def realistic_group_affinity(n, seed, extra):
    """Group affinities around `realistic_affinity(n, seed)` (see above)."""
    affinity = realistic_affinity(n, seed)
    z = affinity.to_numpy()
    names = list(affinity.index)
    rng = np.random.default_rng(seed + 1000)
    shared = rng.normal(0.01, 0.005, size=n)  # Moves every source makes.
    curvature = rng.uniform(0.0, 0.002, size=n)
    sources = [(b,) for b in range(n)] + [tuple(range(n))]
    sources += [tuple(sorted(rng.choice(n, int(rng.integers(2, n)),
                                        replace=False)))
                for _ in range(extra)]
    rows = []
    for source in dict.fromkeys(sources):
        for a in range(n):
            others = [b for b in source if b != a]
            value = shared[a] + z[others, a].sum() + (
                z[a, a] if not others else 0.0)
            value -= curvature[a] * len(source) ** 2 / 2
            rows.append({"sources": "|".join(names[b] for b in source),
                         "target": names[a],
                         "affinity": value + rng.normal(0.0, 0.002)})
    return pd.DataFrame(rows)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    print("tasks  budget  seed  seconds  method             score      "
          "upper_bound  gap     proven")
    for n in map(int, _TASKS.value):
        for seed in map(int, _SEEDS.value):
            if _OBJECTIVE.value == "affinity":
                source = realistic_affinity(n, seed)
                select = grouping.select_groups
            else:
                source = realistic_group_affinity(n, seed, _EXTRA.value)
                select = group_affinity.select_groups_from_group_affinity
            for budget in map(int, _NUM_GROUPS.value):
                start = time.perf_counter()
                result = select(source, budget, time_limit=_TIME_LIMIT.value)
                seconds = time.perf_counter() - start
                relative = result.gap / abs(result.upper_bound)
                print(f"{n:5d}  {budget:6d}  {seed:4d}  {seconds:7.3f}  "
                      f"{result.method:17s}  {result.score:.6f}  "
                      f"{result.upper_bound:.6f}     {relative:6.1%}  "
                      f"{'yes' if result.optimal else 'NO'}")


if __name__ == "__main__":
    app.run(main)
