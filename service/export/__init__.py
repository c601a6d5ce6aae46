"""Exports of the history: CSV tables, EDF+ with annotations, the printable report for a clinician."""

from __future__ import annotations

from service.errors import BedsideError


class ExportError(BedsideError, ValueError):
    """An export could not be made from what the database holds; the message says why."""


class NightNotFoundError(ExportError, LookupError):
    """No night with the given id exists in the database."""


class RawSignalMissingError(ExportError):
    """The night's whole raw signal is not in the database (pruned, or never kept)."""


__all__ = ["ExportError", "NightNotFoundError", "RawSignalMissingError"]
