"""`AffinitySettings`: what to measure and how, as one checked value.

`TaskAffinityModel` and `AffinityMeter` take the same keyword arguments
(`affinity_method=`, `lookahead_step=`, ...), turn them into one
`AffinitySettings` and hand it to their `AffinityRecorder`; nothing reads
the settings back off the model.
"""

import dataclasses
import numbers

from tag_keras.measure import estimators
from tag_keras.measure import sources as sources_lib


@dataclasses.dataclass(frozen=True)
class AffinitySettings:
    """The measurement's settings (checked when made).

    Attributes:
        method: `"lookahead"`, `"first_order"`, `"cosine"` or a name
            registered with `register_affinity_method` (`affinity_method=`).
        lookahead_step: `"optimizer"`, `"sgd"` or `"increment"`.
        scale_by_learning_rate: Divide by the step's learning rate.
        cosine_kernels_only: With `"cosine"`, weight tensors of rank > 1.
        sources: The group sources (`affinity_sources=`): `"tasks"`,
            `"tasks+all"`, `"subsets"` or an integer k.
        random_subsets: Groups drawn at random each measured step
            (`affinity_random_subsets=`), or None.
        seed: Seed of those draws (`affinity_seed=`).
        max_subset_tasks: Most tasks for `"subsets"` and random draws.
    """

    method: str = "lookahead"
    lookahead_step: str = "optimizer"
    scale_by_learning_rate: bool = True
    cosine_kernels_only: bool = False
    sources: str | int = "tasks"
    random_subsets: int | None = None
    seed: int = 0
    max_subset_tasks: int = sources_lib.MAX_SUBSET_TASKS

    def __post_init__(self):
        estimators.check_settings(self.method, self.lookahead_step)
        sources_lib.check_arguments(
            self.sources, self.random_subsets, self.max_subset_tasks
        )
        if (
            self.has_group_sources
            and not estimators.estimator_class(self.method).group_sources
        ):
            raise ValueError(
                f"Group sources need a method that steps on a group's "
                f"gradient: one of {estimators.methods_with('group_sources')}. "
                f"Received: affinity_method={self.method!r}, "
                f"affinity_sources={self.sources!r}, "
                f"affinity_random_subsets={self.random_subsets!r}."
            )
        if isinstance(self.seed, bool) or not isinstance(
            self.seed, numbers.Integral
        ):
            # ValueError, as for every other bad setting (Keras's habit).
            raise ValueError(  # noqa: TRY004
                "`affinity_seed` must be an integer. Received: "
                f"affinity_seed={self.seed!r}."
            )
        for name, cast in (
            ("scale_by_learning_rate", bool),
            ("cosine_kernels_only", bool),
            ("seed", int),
            ("max_subset_tasks", int),
        ):
            object.__setattr__(self, name, cast(getattr(self, name)))

    @property
    def has_group_sources(self) -> bool:
        """Whether groups of tasks are stepped on besides single tasks."""
        return not (self.sources in ("tasks", 1) and not self.random_subsets)

    @classmethod
    def from_keywords(cls, **keywords) -> "AffinitySettings":
        """The settings from the models' keyword names (`KEYWORDS`)."""
        unknown = sorted(set(keywords) - set(KEYWORDS))
        if unknown:
            raise TypeError(
                f"Unknown affinity settings {unknown}; the "
                f"settings are {list(KEYWORDS)}."
            )
        return cls(**{KEYWORDS[k]: v for k, v in keywords.items()})

    def to_config(self) -> dict:
        """The settings under the models' keyword names."""
        return {
            keyword: getattr(self, field)
            for keyword, field in KEYWORDS.items()
        }


#: The models' keyword name of each field (`TaskAffinityModel`,
#: `AffinityMeter`, saved configs): the one spelling of the mapping.
KEYWORDS = {
    "affinity_method": "method",
    "lookahead_step": "lookahead_step",
    "scale_by_learning_rate": "scale_by_learning_rate",
    "cosine_kernels_only": "cosine_kernels_only",
    "affinity_sources": "sources",
    "affinity_random_subsets": "random_subsets",
    "affinity_seed": "seed",
    "max_subset_tasks": "max_subset_tasks",
}
