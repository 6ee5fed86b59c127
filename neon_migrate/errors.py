"""Failures a user can cause, each with a cause, a fix and an exit code.

Every command prints these as one line and exits with `exit_code`; nothing a user
can trigger should end in a traceback. Messages must never contain a password:
build them from masked URLs only.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of all user-facing failures. `str(err)` is the one line shown."""

    exit_code = 1

    def __init__(self, cause: str, fix: str = "") -> None:
        # One line, whatever the cause quotes (a driver message, a user's input).
        self.cause = " ".join(cause.split()).rstrip(".")
        self.fix = " ".join(fix.split()).rstrip(".")
        stop = "" if self.cause.endswith(("?", "!")) else "."
        super().__init__(self.cause + stop + (f" Fix: {self.fix}." if self.fix else ""))

    def amended(self, more: str) -> HarnessError:
        """The same error (class, attributes, exit code) with `more` added to its cause."""
        clone = type(self).__new__(type(self))  # subclasses' __init__ take other arguments
        clone.__dict__.update(self.__dict__)
        HarnessError.__init__(clone, f"{self.cause}; {more}", self.fix)
        clone.__cause__, clone.__context__ = self.__cause__, self.__context__
        return clone.with_traceback(self.__traceback__)


class ConfigError(HarnessError):
    """Bad or missing configuration: variable values, URLs, usage."""

    exit_code = 2


class UnreachableError(HarnessError):
    """A database endpoint could not be reached (after retries for transient errors)."""

    exit_code = 3


class MigrationError(HarnessError):
    """A migration or verification step failed on a reachable database."""

    exit_code = 1


class LockBusyError(MigrationError):
    """Another migration run held the advisory lock for longer than we may wait."""
