r"""The scores s(a, G) that selection maximises, as the solvers see them.

Both objectives beyond the exact tables share one form,

    s(a, G) = c_a + w(|G|) Σ_{b ∈ G∖a} z[b, a],

with w(m) = 1/(m − 1) for pair affinities (`select_groups`: the mean
affinity from the other members, c = 0) and w = 1 for the group-affinity
surrogate (`group_affinity`: an intercept c_a plus a coefficient per
member of the source). Besides the form: one-task groups score `singles`
(or cannot serve), and some groups are *special*, their members' scores
measured rather than modelled (group affinity: s(a, G) = Z(G∖a→a) where
G∖a was measured as a source onto a).

A block S (the tasks one group serves) is worth f(S) = max over groups
G ⊇ S of Σ_{a ∈ S} s(a, G). Under the form, the best helpers for a fixed
group size are those with the largest total z onto S (one sort), so f(S)
is exact without special groups; with them, `block_value` returns the
best of the form's candidates and the special groups holding S, each
valued truly: a value some group reaches, at most f(S) (`exact_blocks`
says which).

Pure NumPy.
"""

import numpy as np


#: Masks per chunk when valuing blocks over all 2^n.
_CHUNK = 1 << 16


def chunks(size):
    """Bitmasks 0 … size − 1 as `_CHUNK`-long int64 arrays."""
    for start in range(0, size, _CHUNK):
        yield np.arange(start, min(start + _CHUNK, size), dtype=np.int64)


def mask_members(mask, n):
    """The boolean membership of the n tasks in the bitmask `mask`."""
    return np.array([(mask >> t) & 1 for t in range(n)], bool)


def to_mask(tasks):
    """The bitmask of the task indices `tasks`."""
    return sum(1 << int(t) for t in tasks)


class Scores:
    """s(a, G) for one problem, and what the solvers need of it.

    Args:
        z: `[n, n]`, `z[b, a]` what member b adds to target a's score.
        max_size: The largest group allowed.
        mean: w(m) = 1/(m − 1) (True) or 1 (False).
        offset: Optional `[n]` intercepts c (zero if None).
        singles: Optional `[n]` one-task scores s(a, {a}), NaN where a
            cannot be served alone; None: no one-task groups.
        overrides: Optional `{group bitmask: [n] scores}`, finite for the
            members whose score is measured, NaN for those the form gives.
            Groups of one task, or beyond `max_size`, are ignored.
    """

    def __init__(self, z, max_size, *, mean=True, offset=None, singles=None,
                 overrides=None):
        self.z = np.asarray(z, dtype=float)
        self.n = len(self.z)
        self.max_size = int(max_size)
        self.mean = bool(mean)
        self.offset = (np.zeros(self.n) if offset is None
                       else np.asarray(offset, dtype=float))
        self.singles = None
        if singles is not None:
            singles = np.asarray(singles, dtype=float)
            if np.isfinite(singles).any():
                self.singles = np.where(np.isfinite(singles), singles,
                                        -np.inf)
        self._special = {}
        rows, members = [], []
        for mask, row in (overrides or {}).items():
            group = mask_members(int(mask), self.n)
            if not 2 <= group.sum() <= self.max_size:
                continue
            indices = np.flatnonzero(group)
            true = np.full(self.n, np.nan)
            true[indices] = self._form(indices)
            measured = np.asarray(row, dtype=float)[indices]
            true[indices] = np.where(np.isfinite(measured), measured,
                                     true[indices])
            self._special[int(mask)] = len(rows)
            rows.append(true)
            members.append(group)
        #: `[count, n]`: the special groups' true scores (NaN: non-member).
        self.special_scores = np.array(rows).reshape(len(rows), self.n)
        #: `[count, n]` booleans: their members.
        self.special_members = np.array(members, bool).reshape(
            len(rows), self.n)

    @property
    def allow_singletons(self):
        return self.singles is not None

    @property
    def exact_blocks(self):
        """Whether `block_value` is f(S) itself (no special groups)."""
        return not self._special

    def weight(self, size):
        """w(m) for groups of `size` >= 2 tasks."""
        return 1.0 / (size - 1) if self.mean else 1.0

    def _form(self, group):
        incoming = self.z[np.ix_(group, group)].sum(axis=0) - self.z[
            group, group]
        return self.offset[group] + self.weight(len(group)) * incoming

    def member_scores(self, group):
        """s(a, G) for each member of `group` (indices), in its order."""
        group = np.asarray(group, dtype=np.int64)
        if len(group) == 1:
            if self.singles is None:
                return np.array([-np.inf])
            return self.singles[group]
        if self._special:
            index = self._special.get(to_mask(group))
            if index is not None:
                return self.special_scores[index, group]
        return self._form(group)

    def score(self, task, group):
        """s(task, group) for indices, -inf where the group cannot serve."""
        if len(group) > self.max_size:
            return -np.inf
        if len(group) == 1:
            return -np.inf if self.singles is None else float(
                self.singles[task])
        index = self._special.get(to_mask(group))
        if index is not None:
            return float(self.special_scores[index, task])
        others = self.z[[b for b in group if b != task], task]
        return float(self.offset[task] + (
            np.mean(others) if self.mean else np.sum(others)))

    def gains(self, pi, group):
        """`(P(G), served)`: Σ_a (s(a, G) − π_a)^+ and the members that
        gain, for the group `group` (indices)."""
        group = np.asarray(group, dtype=np.int64)
        gain = self.member_scores(group) - pi[group]
        keep = gain > 0
        return float(gain[keep].sum()), group[keep]

    def block_value(self, mask):
        """`(value, helpers)` of the block `mask` (see the module docstring).

        Ties: the smallest group wins, helpers by decreasing total onto the
        block, then by increasing task index; special groups only when
        strictly better. `(-inf, ())` if no group can serve the block.
        """
        members = mask_members(mask, self.n)
        size = int(members.sum())
        if size == 0:
            return 0.0, ()
        z = self.z
        totals = z[:, members].sum(axis=1)
        within = totals[members].sum() - z.diagonal()[members].sum()
        base = self.offset[members].sum()
        outside = np.flatnonzero(~members)
        order = outside[np.argsort(-totals[outside], kind="stable")]
        num_helpers = min(len(order), self.max_size - size)
        cumulative = np.concatenate([[0.0], np.cumsum(totals[order])])
        best, best_helpers = -np.inf, ()
        for count in range(max(num_helpers, -1) + 1):
            helpers = order[:count]
            if size + count == 1:
                if self.singles is None:
                    continue
                value = float(self.singles[members].sum())
            else:
                weight = self.weight(size + count)
                value = base + weight * (within + cumulative[count])
                if self._special:
                    swapped = -np.inf  # The weakest helper for the next.
                    if 0 < count < len(order):
                        swapped = base + weight * (
                            within + cumulative[count - 1]
                            + totals[order[count]])
                    value, helpers = self._measured_top(
                        mask, members, helpers, value, order, swapped)
            if value > best:
                best, best_helpers = float(value), tuple(
                    int(h) for h in helpers)
        if self._special:
            holding = np.flatnonzero(self.special_members[:, members].all(
                axis=1))
            for index in holding:
                value = self.special_scores[index, members].sum()
                if value > best:
                    best = float(value)
                    best_helpers = tuple(int(h) for h in np.flatnonzero(
                        self.special_members[index] & ~members))
        return best, best_helpers

    def _measured_top(self, mask, members, helpers, value, order,
                      swapped_value):
        """The top helper set's value if its group is special (measured),
        with the best other set of that size (the weakest helper swapped
        for the next) as the alternative; `(value, helpers)`."""
        index = self._special.get(mask | to_mask(helpers))
        if index is None:
            return value, helpers
        value = self.special_scores[index, members].sum()
        count = len(helpers)
        if 0 < count < len(order):
            swapped = np.append(order[:count - 1], order[count])
            other = self._special.get(mask | to_mask(swapped))
            if other is not None:
                swapped_value = self.special_scores[other, members].sum()
            if swapped_value > value:
                return swapped_value, swapped
        return value, helpers

    def block_values(self, masks):
        """f(S) for each bitmask in `masks` (vectorised `block_value`) if
        `exact_blocks`; otherwise a bound fU(S) >= f(S) from the form alone,
        to be raised by `special_blocks` (a top helper set that is special
        counts as its best other set: no other group of its size is
        better, special or not)."""
        n, z = self.n, self.z
        members = ((masks[:, None] >> np.arange(n)) & 1).astype(bool)
        totals = members.astype(float) @ z.T  # [S, h]: Σ_{a ∈ S} z[h, a]
        sizes = members.sum(axis=1)
        within = np.where(members, totals, 0.0).sum(axis=1)
        within -= members.astype(float) @ z.diagonal()
        base = members.astype(float) @ self.offset
        order = np.argsort(-np.where(members, -np.inf, totals), axis=1,
                           kind="stable")
        helper_totals = np.take_along_axis(
            np.where(members, -np.inf, totals), order, axis=1)
        tops = masks.copy()  # The group of the top helpers, as a bitmask.
        specials = np.array(sorted(self._special), dtype=np.int64)
        cumulative = np.zeros(len(masks))
        values = np.full(len(masks), -np.inf)
        if self.singles is not None:
            alone = sizes == 1
            values[alone] = self.singles[np.argmax(members[alone], axis=1)]
        with np.errstate(invalid="ignore"):
            for helpers in range(n):
                if helpers:
                    previous = cumulative
                    cumulative = cumulative + helper_totals[:, helpers - 1]
                    tops = tops | np.left_shift(1, order[:, helpers - 1])
                group_size = sizes + helpers
                valid = (group_size >= 2) & (group_size <= self.max_size)
                valid &= np.isfinite(cumulative)
                weight = (1.0 / np.maximum(group_size - 1, 1) if self.mean
                          else 1.0)
                candidate = base + (within + cumulative) * weight
                if len(specials):
                    special = np.isin(tops, specials)
                    other = np.full(len(masks), -np.inf)
                    if helpers and helpers < n:
                        other = base + weight * (
                            within + previous + helper_totals[:, helpers])
                    candidate = np.where(special, other, candidate)
                # Strict ">" keeps the smallest group on ties.
                better = valid & (candidate > values)
                values[better] = candidate[better]
        values[sizes == 0] = -np.inf
        return values

    def special_blocks(self):
        """`(masks, values)` chunks: every block S inside a special group G
        with Σ_{a ∈ S} s(a, G), its value served by G (S = ∅ included)."""
        for row, group in zip(self.special_scores, self.special_members):
            indices = np.flatnonzero(group)
            bits = np.left_shift(1, indices)
            for patterns in chunks(2 ** len(indices)):
                pattern = (patterns[:, None] >> np.arange(len(indices))) & 1
                yield pattern @ bits, pattern @ row[indices]

    def all_block_values(self, deadline=None):
        """f(S) for every bitmask S (-inf for S = ∅), chunked; where not
        `exact_blocks`, the bound fU(S) >= f(S) instead. None if
        `deadline` (anything with `passed()`) passes first."""
        values = np.empty(2**self.n)
        for masks in chunks(2**self.n):
            if deadline is not None and deadline.passed():
                return None
            values[masks] = self.block_values(masks)
        for masks, special in self.special_blocks():
            if deadline is not None and deadline.passed():
                return None
            values[masks] = np.maximum(values[masks], special)
        values[0] = -np.inf
        return values

    def best_by_size(self):
        """`[n, max_size]`: column m − 1 bounds s(a, G) over the groups of m
        tasks holding a (-inf where there is none)."""
        n = self.n
        sizes = min(self.max_size, n)
        best = np.full((n, sizes), -np.inf)
        if self.singles is not None:
            best[:, 0] = self.singles
        off = np.where(np.eye(n, dtype=bool), -np.inf, self.z)
        ranked = np.cumsum(-np.sort(-off, axis=0)[: sizes - 1], axis=0)
        for m in range(2, sizes + 1):
            best[:, m - 1] = self.offset + self.weight(m) * ranked[m - 2]
        for row, group in zip(self.special_scores, self.special_members):
            m = int(group.sum())
            best[group, m - 1] = np.maximum(best[group, m - 1], row[group])
        return best
