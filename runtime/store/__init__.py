"""Storage: one :class:`Store` protocol, one contract test suite, one module per backend."""

from .base import (
    STATUS_FILTERS,
    STATUSES,
    AttemptEnd,
    AttemptStart,
    AwakeableOutcome,
    Created,
    Deployment,
    Effects,
    IdempotencyConflict,
    Invocation,
    JournalEntry,
    NewInvocation,
    NotAllowed,
    NotFound,
    StaleEpoch,
    Store,
    StoreError,
    Timer,
    first_attempt,
)


def describe_store(store: Store) -> str:
    """Where a store keeps its data, for people (an absolute path, a table name)."""
    path = getattr(store, "path", None)
    return f"sqlite:///{path}" if path else type(store).__name__


def open_store(url: str) -> Store:
    """Open the store a URL names: ``sqlite:///relative/path``, ``sqlite:////absolute/path``
    (as SQLAlchemy reads them), or a bare path."""
    from .sqlite import SQLiteStore

    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///"))
    if "://" not in url:
        return SQLiteStore(url)
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///PATH")


__all__ = [
    "STATUSES",
    "STATUS_FILTERS",
    "AttemptEnd",
    "AttemptStart",
    "AwakeableOutcome",
    "Created",
    "Deployment",
    "Effects",
    "IdempotencyConflict",
    "Invocation",
    "JournalEntry",
    "NewInvocation",
    "NotAllowed",
    "NotFound",
    "StaleEpoch",
    "Store",
    "StoreError",
    "Timer",
    "describe_store",
    "first_attempt",
    "open_store",
]
