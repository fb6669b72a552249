"""Errors the suite raises on bad input. Each carries a one-line message that names the fix.

The CLI prints ``str(err)`` and exits with status 2; nothing else catches these.
"""
from __future__ import annotations


class SuiteError(Exception):
    """Base class: a user-facing error whose message is one line that names the fix."""


class UnknownNameError(SuiteError):
    """An unknown reproduction, track, scale, profile or config key."""


class ConfigError(SuiteError):
    """A config override that does not parse or does not fit the field's type."""


class DataNotFoundError(SuiteError):
    """A dataset is not under the data root: says which files, where it looked, how to get them."""


class CorruptDataError(SuiteError):
    """A dataset file is truncated or malformed."""


class ReproductionImportError(SuiteError):
    """A reproduction module failed to import; never silently skipped."""
