"""Errors a user can cause and fix (bad grid, unknown name, missing dataset, absent device)."""


class UserError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits with status 2."""
