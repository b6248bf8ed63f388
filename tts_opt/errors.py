"""The root of the errors a user can cause or meet (bad input, missing or damaged files, an
engine that does not start): front ends show their message as one line, never a traceback."""


class UserError(Exception):
    """An expected failure whose message names what is wrong and, where it helps, what to do."""
