r"""Pricing for column generation without enumerating the 2^n blocks.

In the set-partitioning LP of `_columns`, a block S has reduced cost
rc(S) = f(S) − π(S) − μ. Since f(S) is a maximum over the groups G ⊇ S
and the members of G outside S only help,

    max_S rc(S) = max_G P(G) − μ,   P(G) = Σ_{a ∈ G} (s(a, G) − π_a)^+,

with s(a, G) the task's score in the group (`_scores`): a group earns
what each member gains over its price, and the block it offers is the set
of members that gain. Pricing is therefore a search over groups, done
here twice:

- `greedy`: from every task, grow a group one task at a time by the
  largest gain in P; cheap, finds most improving columns, proves nothing.
- `best_groups`: exact branch and bound over groups of each size m, on
  the form s(a, G) = o_a + w Σ_{b ∈ G∖a} z[b, a] (w = w(m)). A node
  fixes some tasks as chosen (I) and some as out, and leaves r new
  members to choose from the free tasks F. With p_a = (π_a − o_a)/w, a
  chosen task's gain is w (x_a)^+, x_a = Σ_{b ∈ I∖a} z[b, a] − p_a
  + Σ_{b ∈ R} z[b, a] over the new members R; (x)^+ is convex, so on the
  range [low, high] x_a takes over every R it is at most the chord
  λ_a x_a + κ_a, linear in R. Any completion thus scores at most

      w · [ Σ_{a ∈ I} (λ_a x⁰_a + κ_a)
            + top-r over b ∈ F of ( Σ_{a ∈ I} λ_a z[b, a] + g_b ) ],

  g_b = (Σ_{c ∈ I} z[c, b] + top-(r−1) over F∖b of z[·, b] − p_b)^+:
  each new member adds its chord-weighted affinity onto the chosen tasks
  (the r new members are common to all of them) and, served itself, at
  most its best case. Leaves are valued truly (`Scores.gains`), and
  special groups, whose measured scores the form does not bound, are
  valued one by one. Nodes whose bound cannot beat the threshold are
  cut, so a finished search proves max_G P(G) <= threshold; a stopped one
  still returns a valid upper bound (the largest bound left open).

Pure NumPy.
"""

import numpy as np

#: Nodes between two checks of the stop condition.
_CHECK_EVERY = 128


def greedy(scores, pi):
    """Served sets of the groups met growing a group from every task.

    Each step adds the task that most increases P under the form; every
    group met is offered, valued truly, and so is every special group.
    Returns `[(P(G), served indices)]` with P(G) > 0.
    """
    n, z, offset = scores.n, scores.z, scores.offset
    off = z - np.diag(z.diagonal())
    found = {}

    def offer(gain, served):
        if gain > 0:
            key = tuple(int(t) for t in served)
            found[key] = max(found.get(key, -np.inf), gain)

    for gain, served in _special_gains(scores, pi):
        offer(gain, served)
    for seed in range(n):
        if scores.allow_singletons:
            offer(*scores.gains(pi, [seed]))
        group = [seed]
        inside = np.zeros(n, bool)
        inside[seed] = True
        incoming = off[seed].copy()  # incoming[a] = Σ_{b ∈ G} z[b, a]
        while len(group) < scores.max_size:
            weight = scores.weight(len(group) + 1)
            members = np.array(group)
            # Gain of the current members once t joins, for every t.
            joined = offset[members] + weight * (
                incoming[members][None, :] + off[:, members]
            )
            total = np.maximum(joined - pi[members], 0.0).sum(axis=1)
            total += np.maximum(offset + weight * incoming - pi, 0.0)
            total[inside] = -np.inf
            task = int(np.argmax(total))
            gain = np.append(
                joined[task] - pi[members],
                offset[task] + weight * incoming[task] - pi[task],
            )
            group.append(task)
            inside[task] = True
            incoming += off[task]
            if scores.exact_blocks:
                total, served = (
                    float(gain[gain > 0].sum()),
                    np.array(group)[gain > 0],
                )
            else:  # A special group's scores are measured, not the form's.
                total, served = scores.gains(pi, group)
            offer(total, served)
    return [(gain, np.array(key)) for key, gain in found.items()]


def _special_gains(scores, pi):
    """`(P(G), served)` of every special group, valued one by one (the
    form does not bound their measured scores)."""
    gain = np.maximum(np.nan_to_num(scores.special_scores - pi, nan=0.0), 0.0)
    return [(float(row.sum()), np.flatnonzero(row > 0)) for row in gain]


class _SizeSearch:
    """Branch and bound over the groups of exactly `size` tasks."""

    def __init__(self, scores, no_self, pi, size):
        self.z = scores.z
        self.no_self = no_self  # z with -inf on the diagonal.
        self.size = size
        self.weight = scores.weight(size)
        self.price = (pi - scores.offset) / self.weight
        self.diagonal = self.z.diagonal()

    def bound(self, chosen, free):
        """`(bound on P, per-free-task score)` for an inner node.

        `chosen` and `free` are index arrays, with 0 < r < len(free) new
        members still to choose. The score of a free task is what it adds
        to the bound if chosen.
        """
        z = self.z
        left = self.size - len(chosen)
        onto = z[chosen].sum(axis=0)  # Σ_{b ∈ I} z[b, ·]
        # A chosen task's gain x = base + Σ_{b ∈ R} z[b, a] lies in
        # [low, high] over the r new members R; (x)^+ is convex, so it is
        # at most the chord through (low, low^+) and (high, high^+).
        base = onto[chosen] - self.diagonal[chosen] - self.price[chosen]
        cross = z[free][:, chosen]
        ranked = np.sort(cross, axis=0)
        low = base + ranked[:left].sum(axis=0)
        high = base + ranked[len(free) - left :].sum(axis=0)
        middle = (low < 0) & (high > 0)
        slope = np.where(
            middle,
            high / np.where(middle, high - low, 1.0),
            (low >= 0).astype(float),
        )
        total = slope @ (base - np.where(middle, low, 0.0))
        # A new member b adds its (chord-weighted) affinity onto the
        # chosen tasks and, served itself, at most its best case.
        alone = 0.0
        if left >= 2:
            incoming = np.sort(self.no_self[free][:, free], axis=0)
            alone = incoming[len(free) - left + 1 :].sum(axis=0)
        own = np.maximum(onto[free] + alone - self.price[free], 0.0)
        score = cross @ slope + own
        total += np.sort(score)[len(free) - left :].sum()
        return self.weight * total, score


def best_groups(scores, pi, threshold, stop, limit=None, bar=None):
    """Groups with P(G) > threshold, and a proven bound on max_G P(G).

    Args:
        scores: The problem's `_scores.Scores`.
        pi: Task prices (the LP's duals).
        threshold: Only groups above it are wanted (μ plus a tolerance).
        stop: Callable, True when the search must stop (checked every
            `_CHECK_EVERY` nodes).
        limit: Optional largest number of nodes.
        bar: Optional value >= `threshold`: nodes that cannot beat it are
            cut, so the search is faster and proves only max_G P(G) <=
            max(bar, the best found).

    Returns:
        `(found, upper, complete, nodes)`: `found` as `[(P(G), served
        indices)]` for groups above `threshold` met on the way (sizes are
        searched from the most promising root down, each raising the bar
        to the best found), `upper` >= max_G P(G), `complete` whether the
        search finished.
    """
    n = scores.n
    found = []
    best = threshold if bar is None else max(bar, threshold)
    open_bound = -np.inf
    nodes = 0
    stopped = False

    def leaf(gain, served):
        nonlocal best
        if gain > threshold and len(served):
            found.append((gain, served))
        best = max(best, gain)

    if scores.allow_singletons:
        for task in range(n):
            leaf(*scores.gains(pi, [task]))
    for gain, served in _special_gains(scores, pi):
        leaf(gain, served)
    empty = np.zeros(0, dtype=np.int64)
    everyone = np.arange(n)
    no_self = scores.z.copy()
    np.fill_diagonal(no_self, -np.inf)
    searches = []
    for size in range(2, min(scores.max_size, n) + 1):
        search = _SizeSearch(scores, no_self, pi, size)
        searches.append((search.bound(empty, everyone)[0], size, search))
    searches.sort(key=lambda entry: -entry[0])
    for root, size, search in searches:
        if root <= best:
            continue
        if stopped:
            open_bound = max(open_bound, root)
            continue
        stack = [(empty, everyone)]
        while stack:
            chosen, free = stack.pop()
            nodes += 1
            if nodes % _CHECK_EVERY == 1 and (
                stop() or (limit is not None and nodes >= limit)
            ):
                stopped = True
                for node in [(chosen, free)] + stack:
                    open_bound = max(open_bound, search.bound(*node)[0])
                break
            left = size - len(chosen)
            if left == 0 or left == len(free):
                group = np.concatenate([chosen] + ([free] if left else []))
                leaf(*scores.gains(pi, group))
                continue
            value, score = search.bound(chosen, free)
            if value <= best:
                continue
            pick = int(np.argmax(score))
            rest = np.delete(free, pick)
            stack.append((chosen, rest))  # Out, explored second.
            stack.append((np.append(chosen, free[pick]), rest))
    return found, max(best, open_bound), not stopped, nodes
