r"""The scores s(a, G) that selection maximises, as the solvers see them.

The objective's definition is `grouping.task_score` (a member's mean
affinity from the other members; a singleton's diagonal entry); this is
its vectorised form for the solvers, and `_blocks` derives the block
values from it. `tests/test_grouping.py` checks both against the
definition on every group and block.

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
is exact without special groups; with them, `blocks.value` returns the
best of the form's candidates and the special groups holding S, each
valued truly: a value some group reaches, at most f(S) (`exact_blocks`
says which). Block values live in `_blocks.BlockValues` (`Scores.blocks`).

Pure NumPy.
"""

import numpy as np

from tag_keras.select import _blocks
from tag_keras.select._blocks import mask_members
from tag_keras.select._blocks import to_mask


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

    def __init__(
        self,
        z,
        max_size,
        *,
        mean=True,
        offset=None,
        singles=None,
        overrides=None,
    ):
        self.z = np.asarray(z, dtype=float)
        self.n = len(self.z)
        self.max_size = int(max_size)
        self.mean = bool(mean)
        self.offset = (
            np.zeros(self.n)
            if offset is None
            else np.asarray(offset, dtype=float)
        )
        self.singles = None
        if singles is not None:
            singles = np.asarray(singles, dtype=float)
            if np.isfinite(singles).any():
                self.singles = np.where(np.isfinite(singles), singles, -np.inf)
        self.special_index, self._blocks = {}, None
        rows, members = [], []
        for mask, row in (overrides or {}).items():
            group = mask_members(int(mask), self.n)
            if not 2 <= group.sum() <= self.max_size:
                continue
            indices = np.flatnonzero(group)
            true = np.full(self.n, np.nan)
            true[indices] = self._form(indices)
            measured = np.asarray(row, dtype=float)[indices]
            true[indices] = np.where(
                np.isfinite(measured), measured, true[indices]
            )
            self.special_index[int(mask)] = len(rows)
            rows.append(true)
            members.append(group)
        #: `{group bitmask: row}`: the special groups' rows below.
        #: `[count, n]`: the special groups' true scores (NaN: non-member).
        self.special_scores = np.array(rows).reshape(len(rows), self.n)
        #: `[count, n]` booleans: their members.
        self.special_members = np.array(members, bool).reshape(
            len(rows), self.n
        )

    @property
    def allow_singletons(self):
        return self.singles is not None

    @property
    def exact_blocks(self):
        """Whether `blocks.value` is f(S) itself (no special groups)."""
        return not self.special_index

    @property
    def blocks(self):
        """The `BlockValues` of these scores: f(S) for blocks S."""
        if self._blocks is None:
            self._blocks = _blocks.BlockValues(self)
        return self._blocks

    def weight(self, size):
        """w(m) for groups of `size` >= 2 tasks."""
        return 1.0 / (size - 1) if self.mean else 1.0

    def _form(self, group):
        incoming = (
            self.z[np.ix_(group, group)].sum(axis=0) - self.z[group, group]
        )
        return self.offset[group] + self.weight(len(group)) * incoming

    def member_scores(self, group):
        """s(a, G) for each member of `group` (indices), in its order."""
        group = np.asarray(group, dtype=np.int64)
        if len(group) == 1:
            if self.singles is None:
                return np.array([-np.inf])
            return self.singles[group]
        if self.special_index:
            index = self.special_index.get(to_mask(group))
            if index is not None:
                return self.special_scores[index, group]
        return self._form(group)

    def score(self, task, group):
        """s(task, group) for indices, -inf where the group cannot serve."""
        if len(group) > self.max_size:
            return -np.inf
        if len(group) == 1:
            return (
                -np.inf if self.singles is None else float(self.singles[task])
            )
        index = self.special_index.get(to_mask(group))
        if index is not None:
            return float(self.special_scores[index, task])
        others = self.z[[b for b in group if b != task], task]
        return float(
            self.offset[task]
            + (np.mean(others) if self.mean else np.sum(others))
        )

    def gains(self, pi, group):
        """`(P(G), served)`: Σ_a (s(a, G) − π_a)^+ and the members that
        gain, for the group `group` (indices)."""
        group = np.asarray(group, dtype=np.int64)
        gain = self.member_scores(group) - pi[group]
        keep = gain > 0
        return float(gain[keep].sum()), group[keep]

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
