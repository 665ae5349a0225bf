"""What older versions wrote: the names they used, read in one place.

Version 0.3 renamed four arguments that saved models carry in their
configs (`TaskAffinityModel(strategy=)`, `ITMTL(first_order=)`,
`SVDTaskWeights(layer=)`, `GroupAffinityState(num_groups=)`), and version
0.2 renamed the groups document's `"verdict"` to `"affinity_structure"`.
Files written under the old names still load, through this module only;
the readers go in version `REMOVED_IN` (CHANGELOG, "Deprecated"). Code
that constructs these classes uses the new names: an old argument name
is refused with the one to use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: The version that stops reading the old names.
REMOVED_IN = "0.5.0"


def _first_order_to_method(first_order: Any) -> str:
    return "first_order" if first_order else "lookahead"


#: Per class, `{old config key: (new key, converter of the value)}`.
RENAMED_CONFIG_KEYS: dict[str, dict[str, tuple[str, Callable | None]]] = {
    "TaskAffinityModel": {"strategy": ("training_method", None)},
    "ITMTL": {"first_order": ("affinity_method", _first_order_to_method)},
    "SVDTaskWeights": {"layer": ("representation_layer", None)},
    "GroupAffinityState": {"num_groups": ("num_sources", None)},
}

#: The groups document's affinity structure under its name before 0.2.
_OLD_VERDICTS = {"split": "stable", "keep together": "unclear"}


def renamed_config(class_name: str, config: dict) -> dict:
    """A copy of a saved `config` of `class_name` under today's key names.

    A config that also holds the new key keeps it (the old one is
    dropped).
    """
    config = dict(config)
    for old, (new, convert) in RENAMED_CONFIG_KEYS.get(class_name, {}).items():
        if old in config:
            value = config.pop(old)
            config.setdefault(new, convert(value) if convert else value)
    return config


def refuse_renamed_argument(class_name: str, kwargs: dict) -> None:
    """Raises `TypeError` naming today's argument for an old one passed."""
    for old, (new, _) in RENAMED_CONFIG_KEYS.get(class_name, {}).items():
        if old in kwargs:
            raise TypeError(
                f"`{class_name}({old}=...)` was renamed `{new}=` in version "
                f"0.3. Pass {new}=... instead; models saved with `{old}` "
                f"still load until version {REMOVED_IN}."
            )


def affinity_structure(entry: dict) -> str:
    """A groups-document result's affinity structure ("stable",
    "unclear" or ""), from its `"affinity_structure"` key or, in a
    document written before version 0.2, its `"verdict"` ("split" /
    "keep together")."""
    if "affinity_structure" in entry:
        return entry["affinity_structure"]
    verdict = entry.get("verdict")
    return _OLD_VERDICTS.get(verdict, "") if isinstance(verdict, str) else ""
