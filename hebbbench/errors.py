"""Errors a user can fix (a missing dataset, a bad option), as opposed to bugs."""


class UserError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits 2."""
