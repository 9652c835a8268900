"""The version of hebbbench, in one place (the package and the environment record read it)."""

__version__ = "0.1.0"
