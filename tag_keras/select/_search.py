"""Local search for the grouping problem when exact enumeration is too big.

Works on the partition form of the problem (see `_solvers`): a
labelling of the tasks into at most `k` blocks, each worth `f(block)`.
Starts from a greedy agglomeration and from seeded random labellings, then
improves each by best-improvement relocation and swap moves, and perturbs
the best labelling found (iterated local search). Every random choice comes
from a generator with a fixed seed, so equal inputs give equal outputs.
"""

import numpy as np

_TOLERANCE = 1e-12


class _Blocks:
    """Memoised block values for one problem."""

    def __init__(self, scores):
        self._scores = scores
        self._cache = {}

    def value(self, mask):
        if mask not in self._cache:
            self._cache[mask] = self._scores.blocks.value(mask)[0]
        return self._cache[mask]


def _masks(labels, num_blocks):
    masks = [0] * num_blocks
    for task, label in enumerate(labels):
        masks[label] |= 1 << task
    return masks


def _improve(blocks, labels, num_blocks, deadline=None):
    """Best-improvement relocations, then swaps, until a local optimum (or
    until `deadline` passes: then the labelling reached so far)."""
    n = len(labels)
    labels = list(labels)
    masks = _masks(labels, num_blocks)
    values = [blocks.value(m) for m in masks]
    while True:
        if deadline is not None and deadline.passed():
            return labels, sum(values)
        best_delta, best_move = _TOLERANCE * (1 + abs(sum(values))), None
        for task in range(n):
            source = labels[task]
            bit = 1 << task
            removed = blocks.value(masks[source] & ~bit) - values[source]
            for target in range(num_blocks):
                if target == source:
                    continue
                delta = removed + blocks.value(masks[target] | bit)
                delta -= values[target]
                if delta > best_delta:
                    best_delta, best_move = delta, (task, target)
        if best_move is None:
            for a in range(n):
                for b in range(a + 1, n):
                    i, j = labels[a], labels[b]
                    if i == j:
                        continue
                    swap = (1 << a) | (1 << b)
                    delta = blocks.value(masks[i] ^ swap) - values[i]
                    delta += blocks.value(masks[j] ^ swap) - values[j]
                    if delta > best_delta:
                        best_delta, best_move = delta, (a, b)
            if best_move is None:
                return labels, sum(values)
            a, b = best_move
            labels[a], labels[b] = labels[b], labels[a]
        else:
            task, target = best_move
            labels[task] = target
        masks = _masks(labels, num_blocks)
        values = [blocks.value(m) for m in masks]


def _agglomerate(blocks, n, num_blocks):
    """Merges the two blocks that lose least until `num_blocks` remain."""
    current = [1 << t for t in range(n)]
    while len(current) > num_blocks:
        best, pair = -np.inf, (0, 1)
        for i in range(len(current)):
            for j in range(i + 1, len(current)):
                merged = current[i] | current[j]
                gain = blocks.value(merged) - blocks.value(current[i])
                gain -= blocks.value(current[j])
                if gain > best:
                    best, pair = gain, (i, j)
        if best == -np.inf:  # Only merges past max_group_size are left.
            return None
        i, j = pair
        current[i] |= current.pop(j)
    labels = [0] * n
    for label, mask in enumerate(current):
        for task in range(n):
            if (mask >> task) & 1:
                labels[task] = label
    return labels


def _random_labels(rng, n, num_blocks):
    labels = np.empty(n, dtype=int)
    labels[rng.permutation(n)] = np.arange(n) % num_blocks
    return labels.tolist()


def local_search(
    scores, num_groups, restarts=16, seed=0, progress=None, deadline=None
):
    """Returns `(blocks as bitmasks, summed objective)` of the best labelling.

    Improves a greedy start, then runs `restarts` restarts, fewer when
    `deadline` (anything with `passed()`) passes first; the greedy start is
    always made. `progress(restart, best)` is called after each restart
    when given.

    Only labellings whose blocks have at most `max_group_size` tasks are
    visited (moves that break the limit are worth -inf), so a feasible start
    is needed: the greedy one and the balanced random ones qualify whenever
    `num_groups * max_group_size >= n`.
    """
    n, max_group_size = scores.n, scores.max_size
    num_blocks = min(num_groups, n)
    blocks = _Blocks(scores)
    rng = np.random.default_rng(seed)
    start = _agglomerate(blocks, n, num_blocks)
    if start is None:
        start = _random_labels(rng, n, num_blocks)
    best_labels, best = _improve(blocks, start, num_blocks, deadline)
    for restart in range(restarts):
        if deadline is not None and deadline.passed():
            break
        if restart % 2 == 0:
            start = _random_labels(rng, n, num_blocks)
        else:  # Perturb the best: relabel a quarter of the tasks.
            start = list(best_labels)
            counts = np.bincount(start, minlength=num_blocks)
            for task in rng.choice(n, size=max(1, n // 4), replace=False):
                room = np.flatnonzero(counts < max_group_size)
                target = int(rng.choice(room)) if len(room) else start[task]
                counts[start[task]] -= 1
                counts[target] += 1
                start[task] = target
        labels, value = _improve(blocks, start, num_blocks, deadline)
        if value > best + _TOLERANCE * (1 + abs(best)):
            best_labels, best = labels, value
        if progress is not None:
            progress(restart + 1, best)
    masks = [m for m in _masks(best_labels, num_blocks) if m]
    return masks, best
