"""One error hierarchy for the whole service.

The split that matters is retriable versus fatal: a retriable failure leaves the record due for
the next attempt; a fatal one stops the pass (bad configuration, AEMO refusing our credentials,
a client bug such as 405/411/415) with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Iterable


class DersyncError(Exception):
    """Base class: every error the CLI turns into a one-line message."""


class ConfigError(DersyncError):
    """The configuration is missing or wrong; carries one line per problem."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class StoreUnavailable(DersyncError):
    """The local store cannot be reached or is locked beyond the wait we allow."""


class StoreNotFound(StoreUnavailable):
    """No dersync store where the settings point. Read-only commands report this instead of
    creating one: a typo in DERSYNC_DATABASE_URL must not look like an empty store."""


class AemoError(DersyncError):
    """Something went wrong talking to AEMO."""


class RetriableError(AemoError):
    """Worth trying again later: 429, 5xx, timeouts, dropped connections.

    `retry_after` carries the server's hint in seconds when it gave a usable one.
    """

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 transaction_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.transaction_id = transaction_id


class FatalError(AemoError):
    """Retrying cannot help and the pass should stop: credentials refused, client bugs."""

    def __init__(self, message: str, *, status: int | None = None,
                 transaction_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.transaction_id = transaction_id


class AuthError(FatalError):
    """AEMO's OAuth endpoint refused the client id and secret (or the token after one refresh)."""


class RetriesExhausted(RetriableError):
    """A retriable failure that persisted through every allowed attempt; the record stays due."""


class AmbiguousWriteError(RetriableError):
    """A write failed in a way that leaves unknown whether AEMO applied it (timeout, drop, 5xx).

    Writes are not idempotent at AEMO, so the transport does not repeat them blindly: the engine
    reads AEMO's state before trying the record again.
    """


class PayloadTooLarge(DersyncError):
    """A body over AEMO's 10 MB limit: caught before sending and reported, never sent."""



class LeaseLost(DersyncError):
    """This process may not send to AEMO (any more): its sender lease lapsed or was taken over.

    Neither retriable nor fatal: the work stops where it is, what is known is recorded (the store
    refuses it if another process already took over), and the records stay due for the holder.
    """


class SenderElsewhere(DersyncError):
    """Another live dersync process holds the sender lease; only one may send to AEMO at a time."""
