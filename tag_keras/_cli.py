"""What the console scripts share: `--help` that lists their flags.

absl's `--help` lists the flags of the main module, which it takes to be
`sys.argv[0]`; for a console script that is the generated wrapper, which
defines none, so `--help` printed only a usage line. `run` declares the
command's own flags as the main module's before absl parses the command
line, and turns Ctrl-C into one line. A leaf module (absl only).
"""

import sys

from absl import app
from absl import flags


def run(main, module_name, program):
    """`app.run(main)` with `module_name`'s flags shown by `--help`.

    Ctrl-C ends the command with one line (`program: interrupted`) and
    exit status 130, not a traceback.
    """
    values = flags.FLAGS
    for flag in values.get_flags_for_module(module_name):
        values.register_key_flag_for_module(sys.argv[0], flag)

    def checked(argv):
        if len(argv) > 1:
            print(
                f"{program}: error: unexpected arguments {argv[1:]}; "
                f"every input is a flag, --name=value (see {program} "
                "--help).",
                file=sys.stderr,
            )
            return 2
        return main(argv)

    try:
        app.run(checked)
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        sys.exit(130)
