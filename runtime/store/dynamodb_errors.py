"""What a DynamoDB request that failed means for the store, in one place.

Every request the DynamoDB store sends goes through :class:`GuardedClient`. What botocore raises
once its own retries are spent because DynamoDB could not serve the request — the endpoint
cannot be reached or dropped the connection, requests stay throttled, DynamoDB answers 5xx,
the credentials are refused or missing, the table is gone — becomes
:class:`~tarry.runtime.store.base.StoreUnavailable`: HTTP 503 with ``Retry-After`` at the
ingress and the admin API, a failed attempt the invoker gives back and retries. Its message
names the table and the problem, never a credential, and no text of DynamoDB's own (an
AccessDenied message names the account and role).

A request that got no answer (or a 5xx) may have been carried out all the same: that one is
:class:`Unanswered`, so a write can be sent again as it was (see :mod:`.dynamodb_unit`).

Everything else passes through as botocore raised it: a cancelled transaction (which
:mod:`.dynamodb_unit` reads and retries), a failed condition, a request the store built wrong.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .base import StoreUnavailable

# Error codes of requests DynamoDB kept refusing for their rate, past botocore's retries.
THROTTLED = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
# Error codes of credentials DynamoDB does not accept (unknown, expired, signed wrongly).
REFUSED_CREDENTIALS = frozenset(
    {
        "UnrecognizedClientException",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "MissingAuthenticationToken",
        "RequestExpired",
        "SignatureDoesNotMatch",
    }
)
# botocore's errors of a client that has no usable credentials at all.
_NO_CREDENTIALS = (
    "NoCredentialsError",
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "TokenRetrievalError",
    "NoAuthTokenError",
    "SSOError",
    "RefreshWithMFAUnsupportedError",
    "ProfileNotFound",
)
# botocore's errors of a request that got no (whole) answer: refused, timed out, cut off.
_UNANSWERED = ("ConnectionError", "HTTPClientError", "IncompleteReadError", "ChecksumError")
# Operations on the table itself: their ResourceNotFoundException is theirs to handle.
_TABLE_OPERATIONS = frozenset({"create_table", "delete_table", "describe_table"})

RETRY_UNANSWERED_S = 1  # a blip, usually


class Unanswered(StoreUnavailable):
    """DynamoDB did not answer the request, or answered it with a 5xx: it may have been carried
    out (the answer was lost on the way back) or not."""


RETRY_THROTTLED_S = 2
RETRY_REFUSED_S = 10  # needs a person, or credentials refreshed
RETRY_NO_TABLE_S = 30  # needs a person


def unavailable(exc: Exception, table: str, endpoint: str, operation: str) -> Exception:
    """The store's error for what botocore raised on ``operation`` (e.g. ``get_item``) against
    ``table`` at ``endpoint``: a :class:`StoreUnavailable` when DynamoDB could not serve it,
    else ``exc`` itself."""
    import botocore.exceptions as errors

    def refused(
        message: str, retry_after_s: int, kind: type[StoreUnavailable] = StoreUnavailable
    ) -> StoreUnavailable:
        error = kind(message)
        error.retry_after_s = retry_after_s
        return error

    def named(names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
        return tuple(getattr(errors, n) for n in names if hasattr(errors, n))

    if isinstance(exc, errors.NoRegionError):
        return refused(
            f"no AWS region is set for the DynamoDB table {table}: export AWS_DEFAULT_REGION",
            RETRY_REFUSED_S,
        )
    if isinstance(exc, named(_NO_CREDENTIALS)):
        return refused(
            f"no usable AWS credentials for the DynamoDB table {table} ({type(exc).__name__}): "
            "check AWS_PROFILE/credentials",
            RETRY_REFUSED_S,
        )
    if isinstance(exc, named(_UNANSWERED)):
        return refused(
            f"cannot reach DynamoDB at {endpoint} for the table {table} ({type(exc).__name__}); "
            "retry soon",
            RETRY_UNANSWERED_S,
            Unanswered,
        )
    passed: Exception = exc  # what is not DynamoDB's failing to serve the request
    if not isinstance(exc, errors.ClientError):
        return passed
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in THROTTLED:
        return refused(
            f"DynamoDB throttled requests to the table {table} beyond botocore's retries "
            f"({code}); retry soon",
            RETRY_THROTTLED_S,
        )
    if code in REFUSED_CREDENTIALS:
        return refused(
            f"DynamoDB refused the credentials for the table {table} ({code}): check "
            "AWS_PROFILE/credentials; this does not pass by itself",
            RETRY_REFUSED_S,
        )
    if code == "AccessDeniedException":
        return refused(
            f"DynamoDB denied {operation} on the table {table} ({code}): the runtime's "
            "credentials lack the permission; check their IAM policy",
            RETRY_REFUSED_S,
        )
    if code == "ResourceNotFoundException" and operation not in _TABLE_OPERATIONS:
        return refused(
            f"the DynamoDB table {table} does not exist at {endpoint} (was it deleted?); what "
            f"was stored in it is gone. Create it with: tarry dynamodb create-table {table}",
            RETRY_NO_TABLE_S,
        )
    if status >= 500:
        return refused(
            f"DynamoDB at {endpoint} failed requests to the table {table} beyond botocore's "
            f"retries ({code or 'HTTP'} {status}); retry soon",
            RETRY_UNANSWERED_S,
            Unanswered,
        )
    return passed


class GuardedClient:
    """An aioboto3 DynamoDB client whose API calls raise :func:`unavailable`'s errors; all
    else (``exceptions``, ``meta``, …) is the client's own.

    >>> client = GuardedClient(raw_client, "tarry")  # doctest: +SKIP
    >>> await client.get_item(TableName="tarry", Key=key)  # DynamoDB down  # doctest: +SKIP
    StoreUnavailable: cannot reach DynamoDB at http://localhost:8000 for the table tarry …
    """

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table
        self._operations = frozenset(client.meta.method_to_api_mapping)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if name not in self._operations:
            return value
        return self._guarded(name, value)

    def _guarded(self, name: str, call: Callable[..., Awaitable[Any]]) -> Any:
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return await call(*args, **kwargs)
            except Exception as exc:
                mapped = unavailable(exc, self._table, self._client.meta.endpoint_url, name)
                if mapped is exc:
                    raise
                raise mapped from exc

        return guarded


__all__ = ["REFUSED_CREDENTIALS", "THROTTLED", "GuardedClient", "Unanswered", "unavailable"]
