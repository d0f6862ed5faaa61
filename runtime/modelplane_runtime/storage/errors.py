"""The one error type of the storage initializer; the CLI prints its message and exits non-zero."""

from __future__ import annotations


class StorageError(Exception):
    """A model could not be fetched; the message is one line that names the problem.

    Messages never contain credentials or URL query strings (presigned URLs carry secrets
    there), because they end up in ``kubectl describe pod`` and in logs.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
