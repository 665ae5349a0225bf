r"""Proven optimal selection beyond the dynamic program's reach.

The partition form of the problem (`_solvers`): choose blocks S (bitmasks)
partitioning the n tasks, at most k of them, maximising Σ f(S). As a set
partitioning integer program over every block:

    max Σ_S f(S) x_S   s.t.  Σ_{S ∋ a} x_S = 1 (each task a),
                             Σ_S x_S <= k,  x_S ∈ {0, 1}.

1. Every f(S) is computed (vectorised, in chunks of masks: 2^n values).
2. The LP relaxation is solved by column generation: a restricted master
   LP over a few columns (HiGHS), its duals π (per task) and μ >= 0 (the
   budget), and exact pricing over all 2^n blocks (reduced cost
   rc(S) = f(S) − π(S) − μ), until no column has a positive reduced cost.
   The LP optimum U is an upper bound of the integer optimum.
3. Reduced-cost fixing: for any integer solution x, Σ f x = Σ π + kμ +
   Σ rc x − μ (k − Σ x) <= U + Σ_S rc(S) x_S, and every rc <= 0 at the LP
   optimum; so an integer solution better than the incumbent L uses only
   blocks with rc(S) >= L − U. Those blocks go to a MILP (HiGHS), whose
   optimum is then the optimum over all blocks: proven, not searched.

Memory is O(2^n) floats (n = 22: 4 M values, 32 MB); time is dominated by
the 2^n block values and the pricing passes. Pure NumPy/SciPy.
"""

import time

import numpy as np
from scipy import optimize
from scipy import sparse

from tag_keras.select import _solvers

#: Masks per chunk when valuing and pricing blocks.
_CHUNK = 1 << 16
#: Columns added per pricing round.
_COLUMNS_PER_ROUND = 200
#: Largest number of blocks handed to the MILP after fixing.
_MAX_MILP_COLUMNS = 400_000


class Deadline:
    """`time_limit` seconds from now (None: never)."""

    def __init__(self, time_limit):
        self._end = None if time_limit is None else (
            time.perf_counter() + time_limit)

    def left(self):
        if self._end is None:
            return None
        return max(0.0, self._end - time.perf_counter())

    def passed(self):
        return self._end is not None and time.perf_counter() >= self._end


def block_values(z, allow_singletons, max_group_size, deadline=None):
    """f(S) for every bitmask S (as `_solvers.all_block_values`), chunked.

    None if `deadline` passes first.
    """
    n = z.shape[0]
    values = np.empty(2**n)
    for masks in _chunks(2**n):
        if deadline is not None and deadline.passed():
            return None
        values[masks] = _solvers.mask_values(z, masks, allow_singletons,
                                             max_group_size)
    values[0] = -np.inf
    return values


def _chunks(size):
    """Bitmasks 0 … size − 1 as `_CHUNK`-long int64 arrays."""
    for start in range(0, size, _CHUNK):
        yield np.arange(start, min(start + _CHUNK, size), dtype=np.int64)


def _reduced_costs(values, pi, mu, n):
    """Yields `(masks, rc)` chunk by chunk: rc(S) = f(S) − π(S) − μ."""
    for masks in _chunks(len(values)):
        yield masks, values[masks] - _member_matrix(masks, n) @ pi - mu


def _member_matrix(masks, n):
    return ((masks[:, None] >> np.arange(n)) & 1).astype(np.float64)


def _master(n, columns, values, num_groups):
    """Solves the restricted master LP; returns (value, x, π, μ)."""
    masks = np.asarray(columns, dtype=np.int64)
    members = _member_matrix(masks, n).T          # n × columns
    result = optimize.linprog(
        -values[masks],
        A_ub=np.ones((1, len(masks))), b_ub=[num_groups],
        A_eq=sparse.csr_array(members), b_eq=np.ones(n),
        bounds=(0, None), method="highs")
    if result.status != 0:
        raise RuntimeError(f"Restricted master LP failed: {result.message}")
    pi = -result.eqlin.marginals
    mu = max(0.0, -float(result.ineqlin.marginals[0]))
    return -float(result.fun), result.x, pi, mu


def _best_reduced(values, pi, mu, n, count):
    """The `count` blocks of largest reduced cost, and the largest."""
    best_masks, best_costs = [], []
    for masks, costs in _reduced_costs(values, pi, mu, n):
        if len(costs) > count:
            top = np.argpartition(-costs, count)[:count]
        else:
            top = np.arange(len(costs))
        best_masks.append(masks[top])
        best_costs.append(costs[top])
    masks, costs = np.concatenate(best_masks), np.concatenate(best_costs)
    order = np.argsort(-costs)[:count]
    return masks[order], costs[order]


def _reduced_costs_at_least(values, pi, mu, n, threshold):
    kept = []
    for masks, costs in _reduced_costs(values, pi, mu, n):
        kept.append(masks[np.isfinite(costs) & (costs >= threshold)])
    return np.concatenate(kept)


def prove(z, num_groups, allow_singletons, max_group_size, incumbent,
          deadline):
    """The optimal blocks, or the best found with a valid upper bound.

    Args:
        z: The score matrix.
        num_groups: The budget k.
        allow_singletons, max_group_size: As `select_groups`.
        incumbent: A feasible partition (bitmasks), e.g. the local search's.
        deadline: A `Deadline`.

    Returns:
        `(blocks, total, upper bound, proven)`; the bound is None when the
        deadline passed before the blocks were valued.
    """
    n = z.shape[0]
    incumbent = list(incumbent)
    values = block_values(z, allow_singletons, max_group_size, deadline)
    if values is None:
        total = sum(_solvers.mask_values(
            z, np.asarray(incumbent, dtype=np.int64), allow_singletons,
            max_group_size))
        return incumbent, float(total), None, False
    best_total = float(sum(values[m] for m in incumbent))
    columns = set(incumbent)
    columns.update(1 << t for t in range(n) if np.isfinite(values[1 << t]))
    tolerance = 1e-9 * (1 + abs(best_total))
    upper = np.inf
    while True:
        lp_value, _, pi, mu = _master(n, sorted(columns), values,
                                      num_groups)
        masks, costs = _best_reduced(values, pi, mu, n, _COLUMNS_PER_ROUND)
        # A valid bound at every round: Σπ + kμ + k · max(0, max rc).
        upper = min(upper, float(pi.sum() + num_groups * mu
                                 + num_groups * max(0.0, costs[0])))
        if costs[0] <= tolerance or deadline.passed():
            break
        columns.update(int(m) for m in masks[costs > tolerance])
    if deadline.passed() and costs[0] > tolerance:
        return incumbent, best_total, upper, False
    upper = min(upper, lp_value)
    if upper <= best_total + tolerance:
        return incumbent, best_total, best_total, True
    candidates = _reduced_costs_at_least(values, pi, mu, n,
                                         best_total - upper - tolerance)
    if len(candidates) > _MAX_MILP_COLUMNS:
        return incumbent, best_total, upper, False
    blocks, total, milp_upper, proven = _milp(
        n, candidates, values, num_groups, deadline)
    if blocks is not None and total > best_total + tolerance:
        incumbent, best_total = blocks, total
    if proven:
        return incumbent, best_total, best_total, True
    return incumbent, best_total, min(upper, max(milp_upper, best_total)), (
        False)


def _milp(n, masks, values, num_groups, deadline):
    """Exact set partitioning over `masks`; `(blocks, total, bound, ok)`."""
    members = sparse.csr_array(_member_matrix(masks, n).T)
    constraints = [
        optimize.LinearConstraint(members, np.ones(n), np.ones(n)),
        optimize.LinearConstraint(np.ones((1, len(masks))), 0, num_groups),
    ]
    options = {}
    left = deadline.left()
    if left is not None:
        options["time_limit"] = max(left, 0.01)
    result = optimize.milp(-values[masks], constraints=constraints,
                           integrality=np.ones(len(masks)),
                           bounds=optimize.Bounds(0, 1), options=options)
    if result.x is None:
        return None, -np.inf, np.inf, False
    chosen = [int(m) for m, x in zip(masks, result.x) if x > 0.5]
    total = float(values[np.asarray(chosen, dtype=np.int64)].sum())
    bound = (-float(result.mip_dual_bound)
             if getattr(result, "mip_dual_bound", None) is not None
             else np.inf)
    return chosen, total, bound, result.status == 0
