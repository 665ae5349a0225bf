"""Solvers behind `select_groups`: exact subset DP and an upper bound.

The selection problem is restated as a partition problem: the tasks a
chosen group serves form a *block*; blocks partition the tasks; a block `S`
is worth

    f(S) = max over groups G ⊇ S of  sum_{a in S} s(a, G)

(`_scores` values it) and at most `k` blocks are allowed. Two blocks that
pick the same group are one network, so the partition optimum is the
selection optimum.

Pure NumPy/SciPy: no TensorFlow.
"""

import numpy as np
from scipy import optimize
from scipy import sparse


def solve_partition_dp(n, values, num_groups, half_values=None):
    r"""Best partition of all `n` tasks into at most `num_groups` blocks.

    Dynamic programming over subsets: with h_0(∅) = 0, h_0(U) = -inf else,

        h_j(U) = max over S ⊆ U with S ∋ min(U) of f(S) + h_{j-1}(U \ S),

    S = U included, so h_j also covers fewer than j blocks. The work is
    about k * 3^n / 2 additions, done in NumPy one subset size at a time.
    With `half_values`, a block may instead be served by a network that
    counts half: the budget is counted in halves (2k of them), a block
    costs 2 at f(S) or 1 at its half value g(S).

    Args:
        n: Number of tasks.
        values: `values[mask]` = f(S) for every bitmask (`values[0]` unused),
            -inf for blocks that cannot be served.
        num_groups: The budget k.
        half_values: Optional `[2^n]` g(S) of half-cost networks (-inf
            where there is none).

    Returns:
        `(blocks, total)`: the blocks as bitmasks, and the optimal sum;
        with `half_values`, `(blocks, total, halves)` where `halves` says
        which blocks use a half-cost network. Ties: the first maximum over
        blocks S in increasing order of the bitmask of S with its lowest
        task removed, from the last block chosen (the one holding task 0)
        inward; a full-cost block before a half-cost one.
    """
    options = [(np.asarray(values, float), 1)]
    if half_values is not None:
        options = [(options[0][0], 2), (np.asarray(half_values, float), 1)]
    levels = min(num_groups, n) * options[0][1]
    best = np.full((levels + 1, 2**n), -np.inf)
    best[:, 0] = 0.0
    choice = np.zeros((levels + 1, 2**n), dtype=np.int64)
    kind = np.zeros((levels + 1, 2**n), dtype=np.int64)
    masks = np.arange(2**n, dtype=np.int64)
    bits = (masks[:, None] >> np.arange(n)) & 1
    counts = bits.sum(axis=1)
    for size in range(1, n + 1):
        union = masks[counts == size]
        positions = np.nonzero(bits[union])[1].reshape(len(union), size)
        # Submasks holding the lowest member: odd r in [0, 2^size).
        pattern = (np.arange(1, 2**size, 2)[:, None] >> np.arange(size)) & 1
        subsets = (np.left_shift(1, positions) @ pattern.T).astype(np.int64)
        rest = union[:, None] ^ subsets
        rows = np.arange(len(union))
        for level in range(1, levels + 1):
            totals = np.stack(
                [
                    option[subsets] + best[level - cost][rest]
                    if level >= cost
                    else np.full(subsets.shape, -np.inf)
                    for option, cost in options
                ]
            )
            flat = totals.transpose(1, 0, 2).reshape(len(union), -1)
            pick = np.argmax(flat, axis=1)
            which, index = np.divmod(pick, subsets.shape[1])
            best[level, union] = flat[rows, pick]
            choice[level, union] = subsets[rows, index]
            kind[level, union] = which
    blocks, halves, remaining, level = [], [], 2**n - 1, levels
    while remaining:
        blocks.append(int(choice[level, remaining]))
        halves.append(bool(kind[level, remaining]))
        level -= options[kind[level, remaining]][1]
        remaining ^= blocks[-1]
    total = float(best[levels, 2**n - 1])
    if half_values is None:
        return blocks, total
    return blocks, total, halves


def size_upper_bound(best, num_groups):
    """A valid upper bound on the summed objective, for any number of tasks.

    `best[a, m − 1]` bounds task a's score in any group of m tasks
    (`_scores.Scores.best_by_size`: for pair affinities the mean of its
    m − 1 largest incoming affinities, its self-affinity for m = 1). The
    bound is the LP relaxation of: choose z_m groups of each size m with
    sum z_m <= k, serve each task in one of them, at most m tasks per group
    of size m. It never exceeds the unlimited-budget optimum
    sum_a max_m best[a, m − 1].
    """
    n = best.shape[0]
    sizes = np.arange(1, best.shape[1] + 1)
    usable = np.isfinite(best)
    num_y = n * len(sizes)
    # Variables: y[a, m] (flattened, only usable ones bounded above 0), z_m.
    c = np.concatenate(
        [-np.where(usable, best, 0.0).ravel(), np.zeros(len(sizes))]
    )
    upper = np.concatenate(
        [usable.ravel().astype(float), np.full(len(sizes), np.inf)]
    )
    serve = sparse.kron(sparse.eye(n), np.ones((1, len(sizes))))
    capacity = sparse.hstack(
        [
            sparse.kron(np.ones((1, n)), sparse.eye(len(sizes))),
            -sparse.diags(sizes.astype(float)),
        ]
    )
    budget = np.concatenate([np.zeros(num_y), np.ones(len(sizes))])
    result = optimize.linprog(
        c,
        A_ub=sparse.vstack([capacity, budget[None, :]]),
        b_ub=np.concatenate([np.zeros(len(sizes)), [num_groups]]),
        A_eq=sparse.hstack([serve, sparse.csr_array((n, len(sizes)))]),
        b_eq=np.ones(n),
        bounds=np.stack([np.zeros(len(c)), upper], axis=1),
        method="highs",
    )
    trivial = float(np.where(usable, best, -np.inf).max(axis=1).sum())
    if result.status != 0:
        return trivial
    # The LP optimum is exact up to solver tolerance; never report below it.
    return min(trivial, -float(result.fun) + 1e-9 * (1 + abs(result.fun)))


def top_partitions(n, values, num_groups, top, batch=4096):
    r"""The `top` best partitions of the `n` tasks into at most
    `num_groups` blocks, best first.

    The dynamic program of `solve_partition_dp` keeping, for every subset
    U and level j, the `top` best values h_j(U) of distinct partitions
    instead of one. Each partition of U into at most j blocks is reached
    once (S is the block holding min(U)), so the lists hold distinct
    partitions. Ties: the lower (subset, rank) pair first.

    Args:
        n: Number of tasks.
        values: `values[mask]` = f(S), -inf where a block cannot be served.
        num_groups: The budget k.
        top: How many partitions to keep.
        batch: Unions valued at once (bounds the memory).

    Returns:
        A list of `(blocks, total)`, at most `top` of them, best first.
    """
    values = np.asarray(values, float)
    levels = min(num_groups, n)
    best = np.full((levels + 1, 2**n, top), -np.inf)
    best[:, 0, 0] = 0.0
    choice = np.zeros((levels + 1, 2**n, top), dtype=np.int64)
    rank = np.zeros((levels + 1, 2**n, top), dtype=np.int64)
    masks = np.arange(2**n, dtype=np.int64)
    bits = (masks[:, None] >> np.arange(n)) & 1
    counts = bits.sum(axis=1)
    for size in range(1, n + 1):
        pattern = (np.arange(1, 2**size, 2)[:, None] >> np.arange(size)) & 1
        for start in range(0, int((counts == size).sum()), batch):
            union = masks[counts == size][start : start + batch]
            positions = np.nonzero(bits[union])[1].reshape(len(union), size)
            subsets = (np.left_shift(1, positions) @ pattern.T).astype(
                np.int64
            )
            rest = union[:, None] ^ subsets
            for level in range(1, levels + 1):
                # [unions, subsets, top] -> the best `top` of each row.
                totals = values[subsets][:, :, None] + best[level - 1][rest]
                flat = totals.reshape(len(union), -1)
                order = np.argsort(-flat, axis=1, kind="stable")[:, :top]
                best[level, union] = np.take_along_axis(flat, order, axis=1)
                which, rank[level, union] = np.divmod(order, top)
                choice[level, union] = np.take_along_axis(
                    subsets, which, axis=1
                )
    found = []
    for r in range(top):
        total = float(best[levels, 2**n - 1, r])
        if not np.isfinite(total):
            break
        blocks, remaining, level, index = [], 2**n - 1, levels, r
        while remaining:
            block = int(choice[level, remaining, index])
            index = int(rank[level, remaining, index])
            blocks.append(block)
            remaining ^= block
            level -= 1
        found.append((blocks, total))
    return found
