"""Errors a user can cause and fix.

Anything raised as :class:`UserError` is printed by the CLI as one line (no traceback) and the process exits
with code 2. The message must name the file, row, field or reference at fault and say how to fix it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (a reference, a file, a flag), not a bug in aloekit."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # One line: the CLI prints it as is, so newlines would break the contract with scripts that grep it.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self.args[0])


class MalformedRow(UserError):
    """One input row that cannot be read. Lenient stages count these by ``reason`` and go on; strict ones raise."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        """A short, stable category ("missing field 'cop'", "empty prompt"...) that reports group rows by."""
