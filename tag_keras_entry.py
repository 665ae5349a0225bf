"""The console scripts' entry points (`tag-select`, `tag-train`).

Kept outside the `tag_keras` package, so that nothing heavy is imported
before Ctrl-C is handled: Ctrl-C while a command is still importing ends
it with one line and exit status 130, as it does later (`tag_keras._cli`).
Standard library only.
"""

import importlib
import sys


def _run(program, module):
    try:
        cli = importlib.import_module(module)
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        sys.exit(130)
    cli.run()


def tag_select():
    """`tag-select`."""
    _run("tag-select", "tag_keras.select.cli")


def tag_train():
    """`tag-train`."""
    _run("tag-train", "tag_keras.train.cli")
