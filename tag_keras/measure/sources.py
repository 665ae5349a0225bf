"""Group sources: the lookahead of a sum of several tasks' gradients.

Besides each task's own gradient, the original release can step the shared
weights by the combined gradient of a group of tasks and measure every
task's loss after it (its `order` flag). `affinity_sources` chooses which
groups are measured every step:

* `"tasks"`: none (single tasks only, the default);
* `"tasks+all"`: the all-task group too (the release's order 1);
* `"subsets"`: every group of two or more tasks (the release's default
  order -1; 2^n - n - 1 groups, refused beyond `max_subset_tasks` tasks);
* an integer k >= 1: every group of 2..k tasks.

`random_subsets=m` adds, every step, m groups drawn at random (seeded by
`seed` and the step number) from the groups of two or more tasks not
measured every step. A group's gradient is the sum of its tasks' gradients
(no extra backward pass); the groups are measured one at a time
(`rows.one_at_a_time`), so the extra memory is that of one lookahead.
"""

import itertools
import numbers

import keras
import numpy as np
import pandas as pd
from keras import ops

from tag_keras import _compat
from tag_keras._tensorflow import tf
from tag_keras.measure import affinity as affinity_lib
from tag_keras.measure import host_state
from tag_keras.measure import rows as rows_lib
from tag_keras.measure import state as state_lib
from tag_keras.tasks import names as names_lib

#: The named values of `affinity_sources`.
SOURCES = ("tasks", "tasks+all", "subsets")
#: Default of `max_subset_tasks`.
MAX_SUBSET_TASKS = 12


def check_arguments(sources, random_subsets, max_subset_tasks):
    """Raises a one-line error for a bad argument (task count unknown)."""
    if isinstance(sources, str):
        if sources not in SOURCES:
            raise ValueError(
                f"`affinity_sources` must be one of {list(SOURCES)} or an "
                f"integer k >= 1. Received: affinity_sources={sources!r}."
            )
    elif (
        isinstance(sources, bool)
        or not isinstance(sources, numbers.Integral)
        or sources < 1
    ):
        raise ValueError(
            "`affinity_sources` must be an integer k >= 1 (groups of up to "
            f"k tasks) or one of {list(SOURCES)}. Received: "
            f"affinity_sources={sources!r}."
        )
    if random_subsets is not None and (
        isinstance(random_subsets, bool)
        or not isinstance(random_subsets, numbers.Integral)
        or random_subsets <= 0
    ):
        raise ValueError(
            "`affinity_random_subsets` must be None or an integer m >= 1 "
            "(groups drawn at random each step). Received: "
            f"affinity_random_subsets={random_subsets!r}."
        )
    if (
        isinstance(max_subset_tasks, bool)
        or not isinstance(max_subset_tasks, numbers.Integral)
        or max_subset_tasks < 2
    ):
        raise ValueError(
            "`max_subset_tasks` must be an integer >= 2. Received: "
            f"max_subset_tasks={max_subset_tasks!r}."
        )


def make(settings, num_tasks):
    """`(GroupSources, GroupAffinityState)` of an `AffinitySettings`, or
    `(None, None)` when only single tasks are sources."""
    if not settings.has_group_sources:
        return None, None
    groups = GroupSources(
        settings.sources,
        num_tasks,
        settings.random_subsets,
        settings.seed,
        settings.max_subset_tasks,
    )
    table = (
        host_state.HostGroupAffinityState
        if keras.backend.backend() == "jax"  # float64 sums on the host
        else GroupAffinityState
    )
    return groups, table(
        len(groups.masks), num_tasks, name="group_affinity_state"
    )


def label(tasks, mask):
    """`"a|b"`: the group of `tasks` selected by the booleans `mask`."""
    return names_lib.SEPARATOR.join(t for t, m in zip(tasks, mask) if m)


class GroupSources:
    """The groups a model measures as sources, and their table.

    Attributes:
        masks: `[P, n]` booleans, one row per group the state holds: the
            fixed groups, or with random draws every group of two or more
            tasks (bitmask order).
        fixed: Indices into `masks` of the groups measured every step.
        pool: Indices into `masks` of the groups random draws come from.
        random_subsets: How many are drawn per step (0: none).
        seed: The draws' seed.

    Args:
        sources: `affinity_sources`.
        num_tasks: n.
        random_subsets: None, or m groups drawn per step.
        seed: Integer seed of the draws.
        max_subset_tasks: The largest n for `"subsets"` and random draws;
            k may not measure more groups than `"subsets"` at this n.
    """

    def __init__(
        self,
        sources,
        num_tasks,
        random_subsets=None,
        seed=0,
        max_subset_tasks=MAX_SUBSET_TASKS,
    ):
        check_arguments(sources, random_subsets, max_subset_tasks)
        n = int(num_tasks)
        limit = 2**max_subset_tasks - max_subset_tasks - 1
        if (sources == "subsets" or random_subsets) and n > max_subset_tasks:
            what = (
                "affinity_sources='subsets'"
                if sources == "subsets"
                else f"affinity_random_subsets={random_subsets}"
            )
            raise ValueError(
                f"{what} keeps a row for each of the 2^n - n - 1 groups, "
                f"allowed up to max_subset_tasks={max_subset_tasks} tasks; "
                f"raise max_subset_tasks or use affinity_sources=k. "
                f"Received: {n} tasks."
            )
        largest = {"tasks": 1, "tasks+all": 1, "subsets": n}.get(
            sources, sources
        )
        largest = min(int(largest), n)
        fixed = [
            m
            for size in range(2, largest + 1)
            for m in _masks_of_size(n, size)
        ]
        if sources == "tasks+all" and n >= 2:
            fixed.append((True,) * n)
        if len(fixed) > limit:
            raise ValueError(
                f"affinity_sources={sources!r} measures {len(fixed)} groups "
                f"per step at {n} tasks, more than the {limit} that "
                f"max_subset_tasks={max_subset_tasks} allows; lower k or "
                "raise max_subset_tasks."
            )
        self.random_subsets = int(random_subsets or 0)
        self.seed = int(seed)
        if self.random_subsets:
            every = [
                m for size in range(2, n + 1) for m in _masks_of_size(n, size)
            ]
            every.sort(key=_bitmask)
            row = {m: k for k, m in enumerate(every)}
            self.masks = np.array(every, dtype=bool).reshape(-1, n)
            self.fixed = sorted(row[m] for m in fixed)
            self.pool = sorted(set(range(len(every))) - set(self.fixed))
            if self.random_subsets > len(self.pool):
                raise ValueError(
                    f"affinity_random_subsets={self.random_subsets} is more "
                    f"than the {len(self.pool)} groups of two or more of "
                    f"{n} tasks not already measured every step."
                )
        else:
            self.masks = np.array(fixed, dtype=bool).reshape(-1, n)
            self.fixed = list(range(len(fixed)))
            self.pool = []

    def __len__(self):
        """The number of groups measured per step."""
        return len(self.fixed) + self.random_subsets

    def drawn(self, step):
        """`[len(self)]` int32 NumPy: the groups the current backend
        measures on `step` (`indices` on TensorFlow, `host_indices` on
        JAX)."""
        if keras.backend.backend() == "jax":
            return self.host_indices(step)
        return np.asarray(self.indices(step))

    def host_indices(self, step):
        """`[len(self)]` int32 NumPy: this step's groups, drawn on the host
        (Keras's JAX backend, where the step number is known there).

        The same fixed groups as `indices`, and m draws without
        replacement from the pool, seeded by `(seed, step)`; the draws
        are not TensorFlow's (another generator), only alike in law.
        """
        fixed = np.asarray(self.fixed, np.int32)
        if not self.random_subsets:
            return fixed
        rng = np.random.default_rng(
            np.random.SeedSequence([self.seed % 2**64, int(step)])
        )
        drawn = rng.choice(len(self.pool), self.random_subsets, replace=False)
        return np.concatenate(
            [fixed, np.asarray(self.pool, np.int32)[drawn]]
        ).astype(np.int32)

    def indices(self, step):
        """`[len(self)]` int32: this step's groups (rows of `masks`)."""
        fixed = tf.constant(self.fixed, tf.int32, shape=[len(self.fixed)])
        if not self.random_subsets:
            return fixed
        seed = tf.stack(
            [tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)]
        )
        noise = tf.random.stateless_uniform([len(self.pool)], seed)
        drawn = tf.math.top_k(noise, self.random_subsets).indices
        pool = tf.constant(self.pool, tf.int32)
        return tf.concat([fixed, tf.gather(pool, drawn)], axis=0)


def _masks_of_size(n, size):
    for members in itertools.combinations(range(n), size):
        yield tuple(k in members for k in range(n))


def _bitmask(mask):
    return sum(1 << k for k, m in enumerate(mask) if m)


class GroupAffinityState(state_lib.RunningSums):
    """Running sums of the group sources' affinities; a layer of the model.

    The `RunningSums` (`tag_keras.measure.state`) with one row per group
    source: for every (group, target) pair the sum of the measured values,
    of their squares, how many steps entered them and how many measured
    steps skipped them.

    Args:
        num_sources: P, the group sources: the rows of the table. (In
            version 0.2 `num_groups`, which elsewhere means the budget.)
        num_tasks: n.
    """

    def __init__(self, num_sources, num_tasks, **kwargs):
        _compat.refuse_renamed_argument("GroupAffinityState", kwargs)
        super().__init__(num_sources, num_tasks, "group_affinity", **kwargs)
        self.num_sources = int(num_sources)
        self.built = True

    def record(self, indices, z, source_ok, target_ok):
        """Adds `[s, n]` rows `z` of the groups `indices`; returns a tensor
        to wait on. `source_ok` is `[s]`, `target_ok` `[n]`."""
        return self.done(
            self.accumulate(z, source_ok, target_ok, rows=indices)
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_sources": self.num_sources,
            "num_tasks": self.num_tasks,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**_compat.renamed_config("GroupAffinityState", config))


class GroupMeter:
    """Measures a step's group sources and records them.

    Args:
        sources: The `GroupSources`.
        state: The `GroupAffinityState`.
    """

    def __init__(self, sources, state):
        self.sources, self.state = sources, state

    def record(self, estimator, gradients, target, source_ok, step):
        """Measures every group of this step; returns a tensor to wait on.

        A group is a usable source when each of its tasks is (`source_ok`).
        """
        indices = self.sources.indices(step)
        z, group_ok = group_matrix(
            self.sources.masks,
            indices,
            estimator,
            gradients,
            target,
            source_ok,
        )
        return self.state.record(indices, z, group_ok, target.ok)


def group_matrix(masks, indices, estimator, gradients, target, source_ok):
    """`([s, n] affinities, [s] usable)` of the groups `indices` (rows of
    `masks`), one lookahead at a time; any backend.

    A group is a usable source when each of its tasks is (`source_ok`).
    """
    masks = ops.convert_to_tensor(masks, "float32")
    row_of = estimator.source_rows(gradients, target)

    def row(k):
        return row_of(gradients.weighted_sum(ops.take(masks, k, axis=0)))

    count = int(indices.shape[0])
    z = rows_lib.one_at_a_time(count, lambda i: row(indices[i]))
    chosen = ops.take(masks, indices, axis=0) > 0
    group_ok = ops.all(
        ops.logical_or(ops.logical_not(chosen), source_ok[None, :]), axis=1
    )
    return ops.reshape(z, [count, -1]), group_ok


def group_frame(tasks, single, groups, masks):
    """The `group_affinity()` DataFrame of single and group sources.

    Args:
        tasks: Task names.
        single: `(sums, squares, counts)` `[n, n]` of the single sources.
        groups: `(sums, squares, counts)` `[P, n]` of the groups, or None.
        masks: `[P, n]` booleans of the groups.

    Returns:
        `pandas.DataFrame` with columns `sources` (names joined by `|`),
        `target`, `affinity`, `count`, `stderr`; one row per measured pair,
        single sources first, then groups in table order.
    """
    labels = list(tasks)
    tables = [single]
    if groups is not None:
        labels += [label(tasks, m) for m in masks]
        tables.append(groups)
    sums, squares, counts = (np.concatenate(parts) for parts in zip(*tables))
    mean = affinity_lib.mean_of(sums, counts)
    stderr = affinity_lib.stderr_of(sums, squares, counts)
    rows, columns = np.nonzero(counts > 0)
    return pd.DataFrame(
        {
            "sources": [labels[r] for r in rows],
            "target": [tasks[c] for c in columns],
            "affinity": mean[rows, columns],
            "count": counts[rows, columns].astype(np.int64),
            "stderr": stderr[rows, columns],
        }
    )
