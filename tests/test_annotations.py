"""Every public callable the API reference documents is fully annotated.

The reference pages (docs/reference/*.md) name each documented object in
a `::: dotted.name` line. For a function, every parameter and the return
carry an annotation; for a class, its constructor and each public method
it defines with a docstring (what the page shows); for a module, each
public function it defines. mypy (.ci/run) then checks the bodies.
"""

import importlib
import inspect
import pathlib
import re

import pytest

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "reference"


def documented_names():
    names = []
    for page in sorted(REFERENCE.glob("*.md")):
        names += re.findall(r"^::: ([\w.]+)", page.read_text(), re.M)
    return names


def resolve(dotted):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            value = getattr(value, part)
        return value
    raise ImportError(dotted)


def callables(name, value):
    """`(qualified name, function)` of what the page shows of `value`."""
    if inspect.ismodule(value):
        return [(f"{name}.{n}", f) for n, f in vars(value).items()
                if inspect.isfunction(f) and not n.startswith("_")
                and f.__module__ == value.__name__]
    if inspect.isclass(value):
        found = []
        if "__init__" in vars(value) and inspect.isfunction(
                vars(value)["__init__"]):
            found.append((f"{name}.__init__", vars(value)["__init__"]))
        for n, member in vars(value).items():
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if isinstance(member, property):
                member = member.fget
            if (inspect.isfunction(member) and not n.startswith("_")
                    and member.__doc__):
                found.append((f"{name}.{n}", member))
        return found
    if inspect.isfunction(value):
        return [(name, value)]
    return []  # A constant (e.g. MEASURES).


def missing_annotations(function):
    """The parameters (and "return") without an annotation."""
    signature = inspect.signature(function)
    missing = [p.name for i, p in enumerate(signature.parameters.values())
               if p.annotation is inspect.Parameter.empty
               and not (i == 0 and p.name in ("self", "cls"))]
    if (signature.return_annotation is inspect.Signature.empty
            and function.__name__ != "__init__"):
        missing.append("return")
    return missing


def test_the_reference_names_objects_that_exist():
    names = documented_names()
    assert len(names) > 60
    for name in names:
        resolve(name)


@pytest.mark.parametrize("name", documented_names())
def test_documented_callables_are_fully_annotated(name):
    gaps = {qualified: missing
            for qualified, function in callables(name, resolve(name))
            if (missing := missing_annotations(function))}
    assert not gaps, f"Unannotated parameters or returns: {gaps}"
