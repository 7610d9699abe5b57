"""Exceptions with a defined meaning for the CLI's exit codes."""

from __future__ import annotations

__all__ = ["DHAError", "UserInputError", "NonFiniteError"]


class DHAError(Exception):
    """Base class of dha's own errors."""


class UserInputError(DHAError, ValueError):
    """Bad input from the user (config, data, paths, plugin names). The CLI prints the
    message as one line and exits with code 2."""


class NonFiniteError(DHAError, RuntimeError):
    """Too many consecutive non-finite steps. The CLI exits with code 1."""
