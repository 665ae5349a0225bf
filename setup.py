"""Installs the tag_keras library and its `tag-select` and `tag-train`
commands."""

import pathlib
import re

import setuptools

_HERE = pathlib.Path(__file__).parent
_VERSION = re.search(
    r'__version__ = "([^"]+)"',
    (_HERE / "tag_keras" / "__init__.py").read_text(),
).group(1)

setuptools.setup(
    name="tag_keras",
    version=_VERSION,
    description=(
        "Which tasks should be trained together? Inter-task affinity (TAG) "
        "measured inside Keras model.fit, and task grouping for a budget."
    ),
    long_description=(_HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["tag_keras", "tag_keras.*"]),
    # PEP 561: the package's annotations are for type checkers to read.
    package_data={"tag_keras": ["py.typed"]},
    # The console scripts' entry points, outside the package so that
    # Ctrl-C while they import is handled.
    py_modules=["tag_keras_entry"],
    python_requires=">=3.10",
    # TensorFlow itself is not required here so that users can choose the
    # build they need (tensorflow, tensorflow-cpu, tensorflow[and-cuda]);
    # the extras below name them, requirements.txt pins what CI uses.
    install_requires=[
        # tag_keras._keras_private reaches a few Keras internals; each is
        # tested (tests/test_keras_private.py) from this version (CI runs
        # them on it and on the pinned one); a newer Keras than tested
        # gets one warning, not a refusal.
        "keras>=3.8,<4",
        "numpy>=1.26",
        "pandas>=2.0",
        "scipy>=1.11",
        "absl-py>=2.0",
        "matplotlib>=3.7",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu>=2.21,<2.22"],
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        # TaskAffinityModel on Keras's JAX backend (KERAS_BACKEND=jax;
        # docs/guides/backends.md).
        "jax": ["jax>=0.4.36"],
        "experiments": ["tensorflow-datasets>=4.9", "scikit-learn>=1.3",
                        "mlxtend>=0.23"],
        "docs": ["mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"],
        # The checks .ci/run makes on tag_keras/ (ruff.toml, mypy.ini).
        "dev": ["ruff>=0.17", "mypy>=2.4"],
        # tag-train --workers / --ray_address (tag_keras.train.executors).
        "ray": ["ray>=2.40"],
    },
    entry_points={
        "console_scripts": [
            "tag-select=tag_keras_entry:tag_select",
            "tag-train=tag_keras_entry:tag_train",
        ],
    },
)
