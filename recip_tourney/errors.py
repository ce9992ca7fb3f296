"""The one exception type that means "the user asked for something we cannot do"."""


class UserError(Exception):
    """A problem with the user's input (name, value, file, path).

    The CLI prints ``str(error)`` as a single line on stderr and exits with code 2; it never
    shows a traceback for this type. The message should name the problem and, where there is
    a closed set of valid choices, list them.
    """
