"""Solvers behind `select_groups`: exact subset DP and an upper bound.

Everything here works on task indices and a dense score matrix `z` where
`z[b, a]` is the affinity of source `b` onto target `a`. The selection
problem is restated as a partition problem: the tasks a chosen group serves
form a *block*; blocks partition the tasks; a block `S` is worth

    f(S) = max over groups G ⊇ S of  sum_{a in S} mean_{b in G, b != a} z[b, a]

and at most `k` blocks are allowed. For a fixed group size m the best helpers
(members of G outside S) are the m - |S| tasks with the largest total
affinity onto S, so f(S) costs one sort. Two blocks that pick the same group
are one network, so the partition optimum is the selection optimum.

Pure NumPy/SciPy: no TensorFlow.
"""

import numpy as np
from scipy import optimize
from scipy import sparse


def mask_members(mask, n):
    """The boolean membership of the n tasks in the bitmask `mask`."""
    return np.array([(mask >> t) & 1 for t in range(n)], bool)


def block_value(z, members, allow_singletons, max_group_size):
    """Returns `(f(S), helpers)` for the block `S` given as a boolean mask.

    Ties: the smallest group wins, helpers by decreasing total affinity onto
    the block, then by increasing task index. `(-inf, ())` if no group of
    at most `max_group_size` tasks can serve the block.
    """
    size = int(members.sum())
    if size == 0:
        return 0.0, ()
    totals = z[:, members].sum(axis=1)
    within = totals[members].sum() - z.diagonal()[members].sum()
    outside = np.flatnonzero(~members)
    order = outside[np.argsort(-totals[outside], kind="stable")]
    num_helpers = min(len(order), max_group_size - size)
    cumulative = np.concatenate([[0.0], np.cumsum(totals[order])])
    best, best_helpers = -np.inf, 0
    for helpers in range(max(num_helpers, -1) + 1):
        if size + helpers == 1:
            if not allow_singletons:
                continue
            value = z.diagonal()[members].sum()
        else:
            value = (within + cumulative[helpers]) / (size + helpers - 1)
        if value > best:
            best, best_helpers = value, helpers
    return float(best), tuple(int(h) for h in order[:best_helpers])


def all_block_values(z, allow_singletons, max_group_size):
    """Returns f(S) for every bitmask S of the tasks (-inf for S = ∅)."""
    n = z.shape[0]
    values = mask_values(z, np.arange(2**n, dtype=np.int64),
                         allow_singletons, max_group_size)
    values[0] = -np.inf
    return values


def mask_values(z, masks, allow_singletons, max_group_size):
    """f(S) for each bitmask in `masks` (vectorised `block_value`)."""
    n = z.shape[0]
    members = ((masks[:, None] >> np.arange(n)) & 1).astype(bool)
    totals = members.astype(float) @ z.T  # totals[S, h] = sum_{a in S} z[h, a]
    sizes = members.sum(axis=1)
    within = np.where(members, totals, 0.0).sum(axis=1)
    within -= members.astype(float) @ z.diagonal()
    helper_totals = -np.sort(-np.where(members, -np.inf, totals), axis=1)
    cumulative = np.zeros(len(masks))
    values = np.full(len(masks), -np.inf)
    if allow_singletons:
        values[sizes == 1] = within[sizes == 1] + (
            members[sizes == 1].astype(float) @ z.diagonal()
        )
    with np.errstate(invalid="ignore"):
        for helpers in range(n):
            if helpers:
                cumulative = cumulative + helper_totals[:, helpers - 1]
            group_size = sizes + helpers
            valid = (group_size >= 2) & (group_size <= max_group_size)
            valid &= np.isfinite(cumulative)
            candidate = (within + cumulative) / np.maximum(group_size - 1, 1)
            # Strict ">" keeps the smallest group on ties, as block_value.
            better = valid & (candidate > values)
            values[better] = candidate[better]
    values[sizes == 0] = -np.inf
    return values


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
            totals = np.stack([
                option[subsets] + best[level - cost][rest] if level >= cost
                else np.full(subsets.shape, -np.inf)
                for option, cost in options])
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


def best_means(z):
    """`[n − 1, n]`: row m − 2 holds t_a(m), the mean of the m − 1 largest
    affinities onto each task a from the others (a group of m at best)."""
    n = z.shape[0]
    off = np.where(np.eye(n, dtype=bool), -np.inf, z)
    ranked = -np.sort(-off, axis=0)  # ranked[i, a]: (i+1)-th best onto a
    return np.cumsum(ranked[: n - 1], axis=0) / np.arange(1, n)[:, None]


def size_upper_bound(z, num_groups, allow_singletons, max_group_size):
    """A valid upper bound on the summed objective, for any number of tasks.

    A task served by a group of m tasks scores at most t_a(m), the mean of
    the m - 1 largest affinities onto it (its self-affinity for m = 1). The
    bound is the LP relaxation of: choose z_m groups of each size m with
    sum z_m <= k, serve each task in one of them, at most m tasks per group
    of size m. It never exceeds the unlimited-budget optimum sum_a t_a(2).
    """
    n = z.shape[0]
    sizes = np.arange(1, min(max_group_size, n) + 1)
    best = np.empty((n, len(sizes)))  # best[a, m-1] = t_a(m)
    best[:, 0] = z.diagonal() if allow_singletons else -np.inf
    best[:, 1:] = best_means(z)[: len(sizes) - 1].T
    usable = np.isfinite(best)
    num_y = n * len(sizes)
    # Variables: y[a, m] (flattened, only usable ones bounded above 0), z_m.
    c = np.concatenate([-np.where(usable, best, 0.0).ravel(), np.zeros(
        len(sizes))])
    upper = np.concatenate([usable.ravel().astype(float),
                            np.full(len(sizes), np.inf)])
    serve = sparse.kron(sparse.eye(n), np.ones((1, len(sizes))))
    capacity = sparse.hstack([
        sparse.kron(np.ones((1, n)), sparse.eye(len(sizes))),
        -sparse.diags(sizes.astype(float)),
    ])
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
