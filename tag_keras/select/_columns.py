r"""Proven optimal selection beyond the dynamic program's reach.

The partition form of the problem (`_solvers`): choose blocks S
partitioning the n tasks, at most k of them, maximising Σ f(S). As a set
partitioning integer program over every block:

    max Σ_S f(S) x_S   s.t.  Σ_{S ∋ a} x_S = 1 (each task a),
                             Σ_S x_S <= k,  x_S ∈ {0, 1}.

1. Column generation solves its LP relaxation: a restricted master LP
   over the blocks met so far (HiGHS) gives duals π (per task) and μ >= 0
   (the budget); pricing looks for blocks of positive reduced cost
   rc(S) = f(S) − π(S) − μ, first greedily, then exactly by branch and
   bound over groups (`_pricing`), which never enumerates the 2^n blocks.
2. Every exact pricing round gives a valid bound, finished or not: for
   any feasible x, Σ f x = Σ π + μ Σ x + Σ rc x <= Σ π + kμ
   + k · max(0, max rc). When pricing proves max rc <= 0 this is the LP
   optimum U.
3. The restricted master solved as a MILP (HiGHS) may improve the
   incumbent; it is proven optimal once it reaches the bound.
4. Otherwise, for small n (`max_enumerated_tasks`), reduced-cost fixing
   closes the gap: an integer solution better than the incumbent L uses
   only blocks with rc(S) >= L − U (since Σ f x <= U + Σ rc x), and those
   blocks, found by valuing all 2^n, go to a MILP whose optimum is then
   the optimum over all blocks. Where some groups' scores are measured
   (`Scores.exact_blocks` False) the blocks are valued by a bound
   fU(S) >= f(S): the kept blocks still hold every better solution, the
   MILP's optimum bounds the optimum, and its blocks' own values are what
   it reaches.

Pure NumPy/SciPy.
"""

import time

import numpy as np
from scipy import optimize
from scipy import sparse

from tag_keras.select import _blocks
from tag_keras.select import _pricing

#: Largest number of blocks handed to the fixing MILP.
_MAX_MILP_COLUMNS = 400_000
#: The relative gap the exact pricing first aims at: a finished search
#: at that bar proves the bound within it; the gap is then divided by
#: four, and after `_LAST_GAP` the search is exact.
_FIRST_GAP, _LAST_GAP = 0.04, 0.0025
#: Columns added per pricing round.
_COLUMNS_PER_ROUND = 100


#: The clock of every `Deadline`: wall time. (A test swaps in the
#: thread's CPU time to check, independently of load, that the deadline is
#: read often enough.)
_clock = time.perf_counter


class Deadline:
    """`time_limit` seconds from now (None: never)."""

    def __init__(self, time_limit):
        self._end = None if time_limit is None else _clock() + time_limit

    def left(self):
        if self._end is None:
            return None
        return max(0.0, self._end - _clock())

    def passed(self):
        return self._end is not None and _clock() >= self._end

    def early(self, share):
        """A deadline at `share` of the time left (itself if unlimited)."""
        left = self.left()
        return self if left is None else Deadline(share * left)


class _Columns:
    """The blocks of the restricted master, as bitmasks with their values."""

    def __init__(self, scores):
        self._scores = scores
        self.masks, self.values, self._known = [], [], set()
        self._rows, self._cols = [], []

    def add(self, masks):
        for mask in masks:
            mask = int(mask)
            if mask in self._known:
                continue
            value = self._scores.blocks.value(mask)[0]
            if np.isfinite(value):
                self._known.add(mask)
                tasks = np.flatnonzero(
                    _blocks.mask_members(mask, self._scores.n)
                )
                self._rows.extend(tasks)
                self._cols.extend([len(self.masks)] * len(tasks))
                self.masks.append(mask)
                self.values.append(value)

    def value(self, mask):
        return self.values[self.masks.index(int(mask))]

    def members(self):
        """The tasks × blocks membership matrix (sparse)."""
        return sparse.csr_array(
            (np.ones(len(self._rows)), (self._rows, self._cols)),
            shape=(self._scores.n, len(self.masks)),
        )


def _master(columns, num_groups):
    """Solves the restricted master LP; returns (value, π, μ)."""
    members = columns.members()
    result = optimize.linprog(
        -np.asarray(columns.values),
        A_ub=np.ones((1, len(columns.masks))),
        b_ub=[num_groups],
        A_eq=members,
        b_eq=np.ones(members.shape[0]),
        bounds=(0, None),
        method="highs",
    )
    if result.status != 0:
        raise RuntimeError(f"Restricted master LP failed: {result.message}")
    pi = -result.eqlin.marginals
    mu = max(0.0, -float(result.ineqlin.marginals[0]))
    return -float(result.fun), pi, mu


def _steady_duals(scores, columns, budget, value):
    r"""Optimal duals of the restricted master that price most steadily.

    Once the restricted LP sits at the incumbent, its optimal duals form a
    face, and the pricing's work depends on the point chosen: a vertex
    (HiGHS's answer) can leave blocks of every size looking profitable,
    and greedy pricing then cycles on degenerate columns. This LP picks,
    on the face Σπ + kμ <= value, π(S) + μ >= f(S) for the blocks met,
    the duals minimising τ >= (a bound like `_pricing.best_groups`'s root
    for every group size) − μ: with t_a(m) from `Scores.best_by_size`,
    root_m = top-m of (t_a(m) − π_a)^+ = min_{s >= 0} m s + Σ_a (t_a(m)
    − π_a − s)^+. Returns `(π, μ)`, or None if HiGHS fails.
    """
    n = scores.n
    best = scores.best_by_size()
    sizes = np.arange(2, best.shape[1] + 1)
    means = best[:, 1:].T  # sizes × n
    count = len(sizes)
    # Variables: π (n), μ, τ, s (count), e (count × n, row-major).
    num = n + 2 + count + count * n
    mu, tau, s = n, n + 1, n + 2
    e = n + 2 + count
    blocks = (-columns.members().T).tocsr()
    rows = [
        sparse.hstack(
            [
                blocks,
                -np.ones((blocks.shape[0], 1)),
                sparse.csr_array((blocks.shape[0], num - n - 1)),
            ]
        )
    ]
    bounds = [-np.asarray(columns.values)]
    face = np.zeros(num)
    face[:n], face[mu] = 1.0, budget
    rows.append(sparse.csr_array(face[None, :]))
    bounds.append([value + 1e-9 * (1 + abs(value))])
    # e[m, a] >= t_a(m) − π_a − s_m:  −π_a − s_m − e[m, a] <= −t_a(m).
    index = np.arange(count * n)
    size_of, task_of = np.divmod(index, n)
    rows.append(
        sparse.csr_array(
            (
                np.concatenate([-np.ones(count * n)] * 3),
                (
                    np.tile(index, 3),
                    np.concatenate([task_of, s + size_of, e + index]),
                ),
            ),
            shape=(count * n, num),
        )
    )
    bounds.append(-means.ravel())
    # m s_m + Σ_a e[m, a] − μ − τ <= 0.
    cols = np.concatenate(
        [
            s + np.arange(count),
            e + index,
            np.full(count, mu),
            np.full(count, tau),
        ]
    )
    data = np.concatenate(
        [sizes.astype(float), np.ones(count * n), -np.ones(2 * count)]
    )
    owner = np.concatenate(
        [np.arange(count), size_of, np.arange(count), np.arange(count)]
    )
    rows.append(sparse.csr_array((data, (owner, cols)), shape=(count, num)))
    bounds.append(np.zeros(count))
    if scores.allow_singletons:  # s(a, {a}) − π_a − μ <= τ.
        usable = np.flatnonzero(np.isfinite(scores.singles))
        single = sparse.csr_array(
            (
                np.concatenate([-np.ones(n), -np.ones(n), -np.ones(n)]),
                (
                    np.tile(np.arange(n), 3),
                    np.concatenate(
                        [np.arange(n), np.full(n, mu), np.full(n, tau)]
                    ),
                ),
            ),
            shape=(n, num),
        )
        rows.append(single[usable])
        bounds.append(-scores.singles[usable])
    objective = np.zeros(num)
    objective[tau] = 1.0
    limits = (
        [(None, None)] * n
        + [(0, None), (None, None)]
        + [(0, None)] * (count + count * n)
    )
    result = optimize.linprog(
        objective,
        A_ub=sparse.vstack(rows).tocsr(),
        b_ub=np.concatenate(bounds),
        bounds=limits,
        method="highs",
    )
    if result.status != 0:
        return None
    return result.x[:n], float(result.x[mu])


def _improving(found, mu, tolerance):
    """Masks of the best found served sets with rc > tolerance."""
    ranked = sorted(found, key=lambda entry: -entry[0])
    return [
        _blocks.to_mask(served)
        for gain, served in ranked[:_COLUMNS_PER_ROUND]
        if gain - mu > tolerance
    ]


def prove(
    scores,
    num_groups,
    incumbent,
    deadline,
    node_limit=None,
    max_enumerated_tasks=24,
    progress=None,
):
    """The optimal blocks, or the best found with a valid upper bound.

    Args:
        scores: The problem's `_scores.Scores`.
        num_groups: The budget k.
        incumbent: A feasible partition (bitmasks), e.g. the local search's.
        deadline: A `Deadline` (or anything with its three methods).
        node_limit: Optional largest number of branch-and-bound nodes in
            all, for a search that stops at the same point on every
            machine.
        max_enumerated_tasks: Up to this many tasks, reduced-cost fixing
            over all 2^n blocks may close a gap the LP leaves.
        progress: None, or a callable receiving one-line messages.

    Returns:
        `(blocks, total, upper bound, proven)`; the bound is None when no
        exact pricing round finished or stopped with a bound before the
        deadline.
    """
    n = scores.n
    columns = _Columns(scores)
    columns.add(incumbent)
    columns.add(1 << t for t in range(n))
    columns.add((1 << a) | (1 << b) for a in range(n) for b in range(a + 1, n))
    best_total = float(sum(columns.value(m) for m in incumbent))
    incumbent = [int(m) for m in incumbent]
    tolerance = 1e-9 * (1 + abs(best_total))
    upper, lp_value, lp_optimal, pi, mu = _generate_columns(
        scores, columns, num_groups, best_total, deadline, node_limit, progress
    )
    if upper is not None and upper <= best_total + tolerance:
        return incumbent, best_total, best_total, True
    if lp_value <= best_total + tolerance:  # The MILP cannot do better.
        return incumbent, best_total, upper, False
    blocks, total, _, _ = _milp(
        columns.members(),
        columns.masks,
        np.asarray(columns.values),
        num_groups,
        deadline,
    )
    if blocks is not None and total > best_total + tolerance:
        incumbent, best_total = blocks, total
        tolerance = 1e-9 * (1 + abs(best_total))
    if upper is not None and upper <= best_total + tolerance:
        return incumbent, best_total, best_total, True
    if not lp_optimal or n > max_enumerated_tasks or deadline.passed():
        return incumbent, best_total, upper, False
    return _fix(
        scores, num_groups, incumbent, best_total, upper, pi, mu, deadline
    )


def _generate_columns(
    scores, columns, num_groups, best_total, deadline, node_limit, progress
):
    """Column generation: adds improving blocks to `columns` until the LP
    is solved, the search stops or the deadline's pricing share passes.

    Returns:
        `(upper, lp_value, lp_optimal, pi, mu)`: the best upper bound found
        (None before an exact pricing round), the last master LP's value,
        whether that value is proven the LP optimum, and its duals.
    """
    n = scores.n
    tolerance = 1e-9 * (1 + abs(best_total))
    upper, lp_optimal, pi, mu, nodes = None, False, None, 0.0, 0
    lp_value = np.inf
    gap = _FIRST_GAP
    budget = min(n, num_groups)
    pricing = deadline.early(0.9)  # Time left for the MILP over its blocks.
    while not pricing.passed():
        lp_value, pi, mu = _master(columns, num_groups)
        if lp_value <= best_total + tolerance:  # Only the proof is left.
            steady = _steady_duals(scores, columns, budget, lp_value)
            if steady is not None:
                pi, mu = steady
        found = _pricing.greedy(scores, pi)
        new = _improving(found, mu, tolerance)
        if new:
            columns.add(new)
            continue
        left = None if node_limit is None else node_limit - nodes
        if left is not None and left <= 0:
            break
        # The bar on reduced costs starts where the bound is a few per
        # cent above the incumbent and drops after each finished search.
        bar = mu + max(tolerance, gap * abs(best_total) / budget)
        found, most, complete, spent = _pricing.best_groups(
            scores, pi, mu + tolerance, pricing.passed, left, bar
        )
        nodes += spent
        bound = float(pi.sum() + budget * mu + budget * max(0.0, most - mu))
        upper = bound if upper is None else min(upper, bound)
        new = _improving(found, mu, tolerance)
        if progress is not None:
            progress(
                f"column generation: {len(columns.masks)} blocks, "
                f"score {best_total / n:.6g}, bound {upper / n:.6g}"
            )
        if new:
            columns.add(new)
        elif not complete:  # Stopped: the bound above is all there is.
            break
        elif bar <= mu + tolerance:  # No rc above the tolerance: the LP.
            lp_optimal, upper = True, min(upper, lp_value)
            break
        else:
            gap = gap / 4 if gap > _LAST_GAP else 0.0
    return upper, lp_value, lp_optimal, pi, mu


def _fix(scores, num_groups, incumbent, best_total, upper, pi, mu, deadline):
    """Reduced-cost fixing over all 2^n blocks (see the module docstring)."""
    n = scores.n
    values = scores.blocks.all_values(deadline)
    if values is None:
        return incumbent, best_total, upper, False
    tolerance = 1e-9 * (1 + abs(best_total))
    threshold = best_total - upper - tolerance
    kept = []
    for masks in _blocks.chunks(2**n):
        costs = values[masks] - _member_matrix(masks, n) @ pi - mu
        kept.append(masks[np.isfinite(costs) & (costs >= threshold)])
    candidates = np.concatenate(kept)
    if len(candidates) > _MAX_MILP_COLUMNS:
        return incumbent, best_total, upper, False
    blocks, total, milp_upper, proven = _milp(
        sparse.csr_array(_member_matrix(candidates, n).T),
        candidates,
        values[candidates],
        num_groups,
        deadline,
    )
    if proven:
        milp_upper = total
    if blocks is not None and not scores.exact_blocks:
        # Valued by fU >= f: the MILP bounds the optimum; what the blocks
        # reach is their own value.
        total = sum(scores.blocks.value(b)[0] for b in blocks)
    if blocks is not None and total > best_total + tolerance:
        incumbent, best_total = blocks, total
    upper = min(upper, max(milp_upper, best_total))
    tolerance = 1e-9 * (1 + abs(best_total))
    return incumbent, best_total, upper, upper <= best_total + tolerance


def _member_matrix(masks, n):
    return ((masks[:, None] >> np.arange(n)) & 1).astype(np.float64)


def _milp(members, masks, values, num_groups, deadline):
    """Exact set partitioning over the blocks `masks` (tasks × blocks
    membership `members`); `(blocks, total, bound, ok)`."""
    n = members.shape[0]
    constraints = [
        optimize.LinearConstraint(members, np.ones(n), np.ones(n)),
        optimize.LinearConstraint(np.ones((1, len(masks))), 0, num_groups),
    ]
    options = {}
    left = deadline.left()
    if left is not None:
        options["time_limit"] = max(left, 0.01)
    result = optimize.milp(
        -values,
        constraints=constraints,
        integrality=np.ones(len(masks)),
        bounds=optimize.Bounds(0, 1),
        options=options,
    )
    if result.x is None:
        return None, -np.inf, np.inf, False
    chosen = [int(m) for m, x in zip(masks, result.x) if x > 0.5]
    total = float(values[result.x > 0.5].sum())
    bound = (
        -float(result.mip_dual_bound)
        if getattr(result, "mip_dual_bound", None) is not None
        else np.inf
    )
    return chosen, total, bound, result.status == 0
