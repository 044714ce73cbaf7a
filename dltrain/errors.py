"""The one exception type for a user's mistake.

Anything raised as ``UserError`` is shown as a single readable message and a non-zero exit,
never as a traceback: it means "your input is wrong", not "dltrain is broken".
"""


class UserError(Exception):
    """Bad input from the user: a config value, a file, a device that is not there."""

    exit_code = 2
