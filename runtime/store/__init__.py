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
    SharedStore,
    StaleEpoch,
    Store,
    StoreBusy,
    StoreError,
    StoreLost,
    StoreUnavailable,
    Timer,
    ValueTooLarge,
    first_attempt,
)


def describe_store(store: Store) -> str:
    """Where a store keeps its data, for people (an absolute path, a table name)."""
    path = getattr(store, "path", None)
    if path:
        return f"sqlite:///{path}"
    url = getattr(store, "url", None)
    return str(url) if url else type(store).__name__


def open_store(url: str, identity: str | None = None) -> Store:
    """Open the store a URL names: ``sqlite:///relative/path``, ``sqlite:////absolute/path``
    (as SQLAlchemy reads them), a bare path, or ``dynamodb://TABLE[?lease=10s]`` (endpoint,
    region and credentials from the standard AWS settings, e.g. ``AWS_ENDPOINT_URL_DYNAMODB``;
    ``lease``: how long another process waits before it takes over an attempt whose process
    stopped renewing it). ``identity``: the name this process holds exclusively
    (:mod:`.identity`), for a store other processes share."""
    if url.startswith("dynamodb://"):
        return _dynamodb(url, identity)
    from .sqlite import SQLiteStore

    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///"))
    if "://" not in url:
        return SQLiteStore(url)
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///PATH or dynamodb://TABLE")


def _dynamodb(url: str, identity: str | None) -> Store:
    import importlib.util
    from urllib.parse import parse_qs, urlsplit

    from tarry.runtime.durations import DurationError, parse_duration_ms

    missing = next((m for m in ("aioboto3", "boto3") if importlib.util.find_spec(m) is None), None)
    try:
        if missing is not None:
            raise ImportError(f"no module named {missing!r}")
        from .dynamodb import DynamoDBStore
    except ImportError as exc:
        raise ValueError(
            f"{url}: the DynamoDB store needs the aws extra: pip install 'tarry[aws]' ({exc})"
        ) from None

    parts = urlsplit(url)
    options = parse_qs(parts.query)
    table = parts.netloc
    if not table or parts.path.strip("/") or set(options) - {"lease"}:
        raise ValueError(f"unsupported store URL {url!r}: use dynamodb://TABLE[?lease=10s]")
    lease_ms = 10_000
    if "lease" in options:
        try:
            lease_ms = parse_duration_ms(options["lease"][-1])
        except DurationError as exc:
            raise ValueError(f"{url!r}: lease: {exc}") from exc
    return DynamoDBStore(table, lease_ms=lease_ms, identity=identity)


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
    "SharedStore",
    "StaleEpoch",
    "Store",
    "StoreBusy",
    "StoreError",
    "StoreLost",
    "StoreUnavailable",
    "Timer",
    "ValueTooLarge",
    "describe_store",
    "first_attempt",
    "open_store",
]
