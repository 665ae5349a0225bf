"""`InputError`: the one error type a user's bad input raises.

A bad argument, flag, file or groups document raises `InputError` with a
one-line message: what was wrong, what was expected, how to fix it, and
the value received. The commands print that line and exit with status 1
(`tag-select` and `tag-train` exit with 2 for a stray positional argument,
`tag_keras._cli`, and with 130 for Ctrl-C); library callers catch one
type. It is a `ValueError`, so code that caught `ValueError` keeps
working. A leaf module (no imports), so the selector
can raise it without TensorFlow.
"""


class InputError(ValueError):
    """Bad input (an argument, a flag, a file, a groups document).

    The message is one line naming the argument or file and the value
    received.
    """
