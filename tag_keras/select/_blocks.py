"""Block values f(S): the best a group can make of serving the block S.

A block S (the tasks one group serves) is worth f(S) = max over groups
G ⊇ S of Σ_{a ∈ S} s(a, G), with s the `Scores`. `BlockValues` gives it
for one block (`value`, with the helpers that reach it), vectorised over
bitmasks (`values`, `all_values`) and for the blocks inside special
(measured) groups. Also the bitmask helpers every solver uses. Pure NumPy.
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


class BlockValues:
    """f(S) for the blocks S of one `Scores` (see the module docstring).

    Args:
        scores: The `Scores` whose groups serve the blocks.
    """

    def __init__(self, scores):
        self._scores = scores

    def value(self, mask):
        """`(value, helpers)` of the block `mask` (see the module docstring).

        Ties: the smallest group wins, helpers by decreasing total onto the
        block, then by increasing task index; special groups only when
        strictly better. `(-inf, ())` if no group can serve the block.
        """
        s = self._scores
        members = mask_members(mask, s.n)
        size = int(members.sum())
        if size == 0:
            return 0.0, ()
        z = s.z
        totals = z[:, members].sum(axis=1)
        within = totals[members].sum() - z.diagonal()[members].sum()
        base = s.offset[members].sum()
        outside = np.flatnonzero(~members)
        order = outside[np.argsort(-totals[outside], kind="stable")]
        num_helpers = min(len(order), s.max_size - size)
        cumulative = np.concatenate([[0.0], np.cumsum(totals[order])])
        best, best_helpers = -np.inf, ()
        for count in range(max(num_helpers, -1) + 1):
            helpers = order[:count]
            if size + count == 1:
                if s.singles is None:
                    continue
                value = float(s.singles[members].sum())
            else:
                weight = s.weight(size + count)
                value = base + weight * (within + cumulative[count])
                if s.special_index:
                    swapped = -np.inf  # The weakest helper for the next.
                    if 0 < count < len(order):
                        swapped = base + weight * (
                            within
                            + cumulative[count - 1]
                            + totals[order[count]]
                        )
                    value, helpers = self._measured_top(
                        mask, members, helpers, value, order, swapped
                    )
            if value > best:
                best, best_helpers = (
                    float(value),
                    tuple(int(h) for h in helpers),
                )
        if s.special_index:
            holding = np.flatnonzero(s.special_members[:, members].all(axis=1))
            for index in holding:
                value = s.special_scores[index, members].sum()
                if value > best:
                    best = float(value)
                    best_helpers = tuple(
                        int(h)
                        for h in np.flatnonzero(
                            s.special_members[index] & ~members
                        )
                    )
        return best, best_helpers

    def _measured_top(
        self, mask, members, helpers, value, order, swapped_value
    ):
        """The top helper set's value if its group is special (measured),
        with the best other set of that size (the weakest helper swapped
        for the next) as the alternative; `(value, helpers)`."""
        s = self._scores
        index = s.special_index.get(mask | to_mask(helpers))
        if index is None:
            return value, helpers
        value = s.special_scores[index, members].sum()
        count = len(helpers)
        if 0 < count < len(order):
            swapped = np.append(order[: count - 1], order[count])
            other = s.special_index.get(mask | to_mask(swapped))
            if other is not None:
                swapped_value = s.special_scores[other, members].sum()
            if swapped_value > value:
                return swapped_value, swapped
        return value, helpers

    def values(self, masks):
        """f(S) for each bitmask in `masks` (vectorised `value`) if
        `exact_blocks`; otherwise a bound fU(S) >= f(S) from the form alone,
        to be raised by `special_blocks` (a top helper set that is special
        counts as its best other set: no other group of its size is
        better, special or not)."""
        s = self._scores
        n = s.n
        members, sizes, totals, within, base = _block_sums(s, masks)
        order = np.argsort(
            -np.where(members, -np.inf, totals), axis=1, kind="stable"
        )
        helper_totals = np.take_along_axis(
            np.where(members, -np.inf, totals), order, axis=1
        )
        tops = masks.copy()  # The group of the top helpers, as a bitmask.
        specials = np.array(sorted(s.special_index), dtype=np.int64)
        cumulative = np.zeros(len(masks))
        values = np.full(len(masks), -np.inf)
        if s.singles is not None:
            alone = sizes == 1
            values[alone] = s.singles[np.argmax(members[alone], axis=1)]
        with np.errstate(invalid="ignore"):
            for helpers in range(n):
                if helpers:
                    previous = cumulative
                    cumulative = cumulative + helper_totals[:, helpers - 1]
                    tops = tops | np.left_shift(1, order[:, helpers - 1])
                group_size = sizes + helpers
                valid = (group_size >= 2) & (group_size <= s.max_size)
                valid &= np.isfinite(cumulative)
                weight = 1.0 / np.maximum(group_size - 1, 1) if s.mean else 1.0
                candidate = base + (within + cumulative) * weight
                if len(specials):
                    special = np.isin(tops, specials)
                    other = np.full(len(masks), -np.inf)
                    if helpers and helpers < n:
                        other = base + weight * (
                            within + previous + helper_totals[:, helpers]
                        )
                    candidate = np.where(special, other, candidate)
                # Strict ">" keeps the smallest group on ties.
                better = valid & (candidate > values)
                values[better] = candidate[better]
        values[sizes == 0] = -np.inf
        return values

    def all_values(self, deadline=None):
        """f(S) for every bitmask S (-inf for S = ∅), chunked; where not
        `exact_blocks`, the bound fU(S) >= f(S) instead. None if
        `deadline` (anything with `passed()`) passes first."""
        s = self._scores
        values = np.empty(2**s.n)
        for masks in chunks(2**s.n):
            if deadline is not None and deadline.passed():
                return None
            values[masks] = self.values(masks)
        for masks, special in special_blocks(s):
            if deadline is not None and deadline.passed():
                return None
            values[masks] = np.maximum(values[masks], special)
        values[0] = -np.inf
        return values


def special_blocks(scores):
    """`(masks, values)` chunks: every block S inside a special group G of
    `scores` with Σ_{a ∈ S} s(a, G), its value served by G (S = ∅
    included)."""
    for row, group in zip(scores.special_scores, scores.special_members):
        indices = np.flatnonzero(group)
        bits = np.left_shift(1, indices)
        for patterns in chunks(2 ** len(indices)):
            pattern = (patterns[:, None] >> np.arange(len(indices))) & 1
            yield pattern @ bits, pattern @ row[indices]


def _block_sums(scores, masks):
    """`(members, sizes, totals, within, base)` of the blocks `masks`:
    `totals[S, h] = Σ_{a ∈ S} z[h, a]`, `within` the same over h ∈ S
    (diagonal left out), `base` the blocks' summed offsets."""
    members = ((masks[:, None] >> np.arange(scores.n)) & 1).astype(bool)
    totals = members.astype(float) @ scores.z.T
    within = np.where(members, totals, 0.0).sum(axis=1)
    within -= members.astype(float) @ scores.z.diagonal()
    base = members.astype(float) @ scores.offset
    return members, members.sum(axis=1), totals, within, base
