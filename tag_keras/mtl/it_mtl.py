"""IT-MTL: each step's shared update chosen by lookahead affinity.

Increased-Transfer MTL (Fifty et al., 2021) builds several candidate
gradients for the shared weights at every step, measures for each the total
lookahead affinity `Z = sum_j (1 - L_j(after) / L_j(before))` on the
training batch, and applies the best one; task heads update as usual. The
lookahead is the one `TaskAffinityModel` measures affinity with: the
compiled optimizer's real next step, state included, on copies.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import keras
import numpy as np

from tag_keras import _compat
from tag_keras import _distribute
from tag_keras._tensorflow import tf
from tag_keras.mtl import pcgrad
from tag_keras.mtl.base import WeightedMethod
from tag_keras.tasks import affinity as affinity_formulas

if TYPE_CHECKING:  # for annotations only
    from tag_keras.mtl.base import TrainingMethod

ALL = "all"
PCGRAD = "pcgrad"
EACH = "each"
LEAVE_ONE_OUT = "leave_one_out"
SUBSETS = "subsets"
_KEYWORDS = (ALL, PCGRAD, EACH, LEAVE_ONE_OUT, SUBSETS)
#: Most tasks for `"subsets"` (2^n - 1 candidates, one lookahead each).
MAX_SUBSET_TASKS = 6


#: The scores `ITMTL(affinity_method=...)` accepts.
AFFINITY_METHODS = ("lookahead", "first_order")


@keras.saving.register_keras_serializable(package="tag_keras")
class ITMTL(WeightedMethod):
    """Picks each step's shared update among candidate gradients.

    Candidates (`candidates=`), each one of:

    - `"all"`: the sum of the task gradients (plain multi-task learning);
    - `"pcgrad"`: the PCGrad gradient (see `PCGrad`);
    - `"each"`: every single-task gradient, one candidate per task;
    - `"leave_one_out"`: for every task, the sum of the others' gradients
      (with `"all"`, the set {[m] - {i}} ∪ [m] the paper recommends);
    - `"subsets"`: every non-empty subset of tasks (2^n - 1 candidates; at
      most `MAX_SUBSET_TASKS` tasks);
    - a task name, or a tuple of task names: the sum of those tasks'
      gradients.

    By default, as in the paper: for two tasks each task alone and both
    together; otherwise `"all"` and `"pcgrad"`. With `loss_weighting` (for
    example `UncertaintyWeights()`, giving IT-UW-PCGrad) every candidate is
    built from the weighted losses' gradients.

    `affinity_method="first_order"` skips the lookahead forward passes and
    picks the candidate with the largest inner product with the gradient
    of the log-product loss `sum_j log L_j` (that is
    `sum_j grad L_j / L_j`), as `TaskAffinityModel`'s first-order
    affinity approximates its lookahead.

    Which candidate won is kept in model weights (`counts()`), per epoch in
    `epoch_counts` (set before other callbacks see the epoch's end), and is
    written to CSV by `CandidateLogger`.

    Args:
        candidates: The candidate list, or None for the defaults.
        affinity_method: `"lookahead"` (the default: the compiled
            optimizer's real step, one forward pass per candidate) or
            `"first_order"` (its approximation; `first_order=True` in
            version 0.2).
        loss_weighting: Optional loss-weighting method.
        seed: Seed of the PCGrad candidate's random projection order.
        update_heads_first: As the transference paper's Algorithm 1, score
            each candidate with the task heads already moved by their own
            optimizer step: `Z = sum_j 1 - L_j(θs', θj') / L_j(θs, θj')`
            with `θj'` the heads after that step. False (the default, as
            this package's committed IT-MTL results) keeps the heads at
            their current values. Not used with `"first_order"`.
        **kwargs: Layer arguments such as `name`.
    """

    needs_task_gradients = True

    def __init__(
        self,
        candidates: Sequence | None = None,
        affinity_method: str = "lookahead",
        loss_weighting: TrainingMethod | None = None,
        seed: int | None = None,
        update_heads_first: bool = False,
        **kwargs: Any,
    ) -> None:
        _compat.refuse_renamed_argument("ITMTL", kwargs)
        super().__init__(loss_weighting, **kwargs)
        if candidates is not None:
            candidates = _check_candidates(candidates)
        if affinity_method not in AFFINITY_METHODS:
            raise ValueError(
                f"`affinity_method` must be one of {list(AFFINITY_METHODS)}."
                f" Received: affinity_method={affinity_method!r}."
            )
        self.candidates = candidates
        self.affinity_method = affinity_method
        self.first_order = affinity_method == "first_order"
        self.update_heads_first = bool(update_heads_first)
        self.lookahead_heads = self.update_heads_first and not self.first_order
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.epoch_counts = None
        self._epoch_start = None

    # ------------------------------------------------------------------

    def build_tasks(self, task_names):
        super().build_tasks(task_names)
        self._resolved = _resolve(self.candidates, self.task_names)
        m = len(self._resolved)

        def state(name, shape, fill, dtype):
            return self.add_weight(
                shape=shape,
                initializer=keras.initializers.Constant(fill),
                dtype=dtype,
                trainable=False,
                aggregation="only_first_replica",
                name=name,
            )

        self.choice_counts = state("choice_counts", (m,), 0.0, "float64")
        self.last_scores = state("last_scores", (m,), float("nan"), "float64")
        self.last_choice = state("last_choice", (), -1, "int64")

    @property
    def candidate_labels(self) -> list[str]:
        """The candidates' names, in the order of `counts()`."""
        return [label for label, _ in self._resolved]

    def counts(self) -> dict[str, int]:
        """`{candidate: steps it was chosen}` over all training so far."""
        values = np.asarray(self.choice_counts.numpy(), np.int64)
        return dict(zip(self.candidate_labels, values.tolist()))

    def on_epoch_begin(self):
        self.epoch_counts = None
        self._epoch_start = self.counts()

    def on_epoch_end(self):
        if self._epoch_start is None:
            return
        now = self.counts()
        self.epoch_counts = {k: now[k] - self._epoch_start[k] for k in now}

    # ------------------------------------------------------------------

    def combine(self, gradients, context):
        candidates = [
            self._candidate(tasks, gradients) for _, tasks in self._resolved
        ]
        if self.first_order:
            scores = self._first_order_scores(candidates, gradients, context)
        else:
            scores = tf.stack(
                [
                    total_affinity(
                        context.lookahead(c), context.losses, context.usable
                    )
                    for c in candidates
                ]
            )
        choice = best_candidate(scores)
        with tf.control_dependencies([self._record(choice, scores)]):
            return [
                tf.gather(tf.stack(per_variable), choice)
                for per_variable in zip(*candidates)
            ]

    def _candidate(self, tasks, gradients):
        if tasks == PCGRAD:
            orders = pcgrad.random_orders(
                len(self.task_names), self.seed_generator
            )
            return pcgrad.projected_sum(gradients, orders)
        return gradients.sum(tasks)

    def _first_order_scores(self, candidates, gradients, context):
        """Each candidate's summed first-order affinity: a unit step down
        the candidate `c` changes the shared weights by `-c`, so
        `Z_j = <∇(w_j L_j), c> / (w_j L_j)` (the loss weights cancel)."""
        flat = gradients.global_flat()
        multipliers = self.loss_multipliers()
        scale = tf.cast(context.losses, tf.float32)
        if multipliers is not None:
            scale = scale * tf.cast(multipliers, tf.float32)
        stacked = _distribute.replica_sum(
            tf.stack([gradients.flatten(c) for c in candidates])
        )
        # dot[c, j] = <∇(w_j L_j), Δθ_c> with Δθ_c = -c.
        dots = -tf.matmul(stacked, flat, transpose_b=True)
        safe = tf.where(context.usable, scale, tf.ones_like(scale))
        z = affinity_formulas.first_order_affinity(dots, safe)
        return tf.reduce_sum(
            tf.where(context.usable[tf.newaxis], z, tf.zeros_like(z)), axis=1
        )

    def _record(self, choice, scores):
        # Every replica holds the same choice (the scores are global-batch
        # sums); the variables keep the first replica's.
        self.choice_counts.assign_add(
            tf.one_hot(choice, len(self._resolved), dtype="float64")
        )
        self.last_scores.assign(tf.cast(scores, "float64"))
        self.last_choice.assign(tf.cast(choice, "int64"))
        return [
            v.value
            for v in (self.choice_counts, self.last_scores, self.last_choice)
        ]

    def get_config(self):
        return {
            **super().get_config(),
            "candidates": self.candidates,
            "affinity_method": self.affinity_method,
            "seed": self.seed,
            "update_heads_first": self.update_heads_first,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**_compat.renamed_config("ITMTL", config))


def total_affinity(after, before, usable):
    """`sum_j (1 - after_j / before_j)` over the usable tasks: the sum of a
    candidate's lookahead affinities (`tag_keras.tasks.affinity`)."""
    before = tf.cast(before, tf.float32)
    after = tf.cast(after, tf.float32)
    safe = tf.where(usable, before, tf.ones_like(before))
    z = affinity_formulas.lookahead_affinity(safe, after[tf.newaxis])[0]
    return tf.reduce_sum(tf.where(usable, z, tf.zeros_like(z)))


def best_candidate(scores):
    """Index of the largest score; non-finite scores never win."""
    scores = tf.cast(scores, tf.float32)
    finite = tf.math.is_finite(scores)
    masked = tf.where(finite, scores, tf.fill(tf.shape(scores), -np.inf))
    best = tf.argmax(masked, output_type=tf.int32)
    return tf.where(tf.reduce_any(finite), best, 0)


def _check_candidates(candidates):
    if isinstance(candidates, str):
        candidates = [candidates]
    candidates = list(candidates)
    if not candidates:
        raise ValueError(
            "IT-MTL needs at least one candidate gradient, e.g. "
            "candidates=['all', 'pcgrad']. Received: candidates=[]."
        )
    checked = []
    for c in candidates:
        if isinstance(c, str):
            checked.append(c)
        elif (
            isinstance(c, (tuple, list))
            and c
            and all(isinstance(t, str) for t in c)
        ):
            checked.append(tuple(c))
        else:
            raise TypeError(
                "Each candidate must be 'all', 'pcgrad', 'each', a task "
                f"name or a tuple of task names. Received: {c!r}."
            )
    return checked


def _resolve(candidates, tasks):
    """`[(label, tasks or PCGRAD)]` for these task names."""
    if candidates is None:
        if len(tasks) == 2:
            candidates = [(tasks[0],), (tasks[1],), ALL]
        else:
            candidates = [ALL, PCGRAD]
    resolved = []
    for c in candidates:
        if c == ALL:
            resolved.append((ALL, tuple(tasks)))
        elif c == PCGRAD:
            resolved.append((PCGRAD, PCGRAD))
        elif c == EACH:
            resolved.extend((t, (t,)) for t in tasks)
        elif c == LEAVE_ONE_OUT:
            resolved.extend(
                ("+".join(s), s)
                for s in (tuple(o for o in tasks if o != t) for t in tasks)
            )
        elif c == SUBSETS:
            if len(tasks) > MAX_SUBSET_TASKS:
                raise ValueError(
                    f"IT-MTL candidates='subsets' makes 2^n - 1 lookaheads "
                    f"per step; it allows at most {MAX_SUBSET_TASKS} tasks. "
                    f"Received: {len(tasks)} tasks."
                )
            resolved.extend(
                ("+".join(s), s)
                for size in range(1, len(tasks) + 1)
                for s in itertools.combinations(tasks, size)
            )
        else:
            subset = (c,) if isinstance(c, str) else tuple(c)
            unknown = [t for t in subset if t not in tasks]
            if unknown:
                raise ValueError(
                    f"IT-MTL candidate {c!r} names unknown tasks {unknown}. "
                    f"Tasks: {list(tasks)}; keywords: {list(_KEYWORDS)}."
                )
            resolved.append(("+".join(subset), subset))
    labels = [label for label, _ in resolved]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise ValueError(
            f"IT-MTL candidates repeat {repeated}. Received: "
            f"candidates={candidates!r}."
        )
    return resolved
