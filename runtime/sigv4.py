"""SigV4 signing of the CLI's admin requests, for an admin API behind API Gateway's IAM
authorisation (AWS_IAM on every route).

Credentials come from botocore's chain (environment, profile, SSO, container or instance
role); botocore's own signer computes the signature, over the request httpx is about to send.
botocore is part of the ``aws`` extra, so it is imported only when a request is signed.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Generator
from typing import Any

import httpx

SERVICE = "execute-api"

# {api}.execute-api.{region}.amazonaws.com, its VPC endpoint form ({...}.execute-api.{region}
# .vpce.amazonaws.com) and China's amazonaws.com.cn
_AWS_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.(?:vpce\.)?amazonaws\.com(?:\.cn)?$")


class SigningError(Exception):
    """A request that should be signed cannot be: no botocore, no credentials, no region."""


def is_aws_endpoint(url: str) -> bool:
    """Whether ``url`` is API Gateway's, on AWS or an emulator (LocalStack, MiniStack), so its
    requests are signed.

    >>> is_aws_endpoint("https://a1b2c3.execute-api.eu-west-1.amazonaws.com/prod")
    True
    >>> is_aws_endpoint("https://a1b2c3.execute-api.localhost.localstack.cloud:4566/prod")
    True
    >>> is_aws_endpoint("http://127.0.0.1:4566/_aws/execute-api/a1b2c3/prod")
    True
    >>> is_aws_endpoint("http://localhost:4566/restapis/a1b2c3/prod/_user_request_")
    True
    >>> is_aws_endpoint("http://127.0.0.1:9070")
    False
    """
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    path = parts.path + "/"
    return (
        host.startswith("execute-api.")
        or ".execute-api." in host
        or "/_aws/execute-api/" in path
        or ("/restapis/" in path and "/_user_request_/" in path)  # LocalStack's older form
    )


def region_from_url(url: str) -> str | None:
    """The region an AWS API Gateway host names (an emulator's names none).

    >>> region_from_url("https://a1b2c3.execute-api.eu-west-1.amazonaws.com/prod")
    'eu-west-1'
    >>> region_from_url("https://a1b2c3.execute-api.localhost.localstack.cloud:4566/prod")
    """
    match = _AWS_HOST.search((urllib.parse.urlsplit(url).hostname or "").lower())
    return match.group(1) if match else None


def canonical_query(query: str) -> str:
    """``query`` with every name and value percent-encoded as SigV4 wants it (only
    ``A-Za-z0-9-_.~`` left as they are, a space as ``%20``), in the order given. httpx encodes
    ``params`` as a form does (a space as ``+``, a literal ``+`` as ``%2B``), which API Gateway
    would read differently from what was signed; the canonical form means the same to the
    admin API.

    >>> canonical_query("service=a+b&status=backing-off&x=%2A&flag")
    'service=a%20b&status=backing-off&x=%2A&flag='
    """
    if not query:
        return ""
    pairs = (pair.partition("=") for pair in query.split("&") if pair)
    return "&".join(f"{_encode(name)}={_encode(value)}" for name, _, value in pairs)


def _encode(part: str) -> str:
    return urllib.parse.quote(urllib.parse.unquote_plus(part), safe="-_.~")


class SigV4(httpx.Auth):
    """Signs each request with SigV4 for ``execute-api`` in ``region``.

    Signed are the method, the URL with its query, the body, and the ``host`` and
    ``content-type`` headers (the ones no proxy on the way rewrites); botocore adds
    ``x-amz-date`` and, for temporary credentials, ``x-amz-security-token``.
    """

    requires_request_body = True  # the body is part of the signature

    def __init__(self, credentials: Any, region: str, *, source: str = "") -> None:
        self._credentials = credentials  # botocore's, refreshable: frozen once per request
        self.region = region
        self._source = source
        self._access_key: str | None = None  # the one that signed last

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request

    def sign(self, request: httpx.Request) -> None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        try:
            frozen = self._credentials.get_frozen_credentials()  # may refresh: SSO, a role
        except Exception as exc:  # botocore's: an expired SSO session, a refused AssumeRole
            raise SigningError(f"no AWS credentials to sign the admin request: {exc}") from exc
        self._access_key = frozen.access_key
        query = canonical_query(request.url.query.decode("ascii"))
        request.url = request.url.copy_with(query=query.encode("ascii") or None)
        headers = {"host": request.headers["host"]}
        if "content-type" in request.headers:
            headers["content-type"] = request.headers["content-type"]
        signed = AWSRequest(
            method=request.method, url=str(request.url), data=request.content, headers=headers
        )
        SigV4Auth(frozen, SERVICE, self.region).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]

    def identity(self) -> str:
        """Who signs, as far as is known without asking AWS (no STS call)."""
        key = self._access_key or "?"
        return f"access key {key}" + (f" ({self._source})" if self._source else "")


def signer_for(url: str) -> SigV4:
    """The signer for requests to ``url``, with the credentials botocore's chain finds and the
    region the URL names (else AWS_REGION, AWS_DEFAULT_REGION, the profile's region)."""
    try:
        import botocore.exceptions
        import botocore.session
    except ImportError:
        raise SigningError(
            f"{url} is an AWS endpoint: signing its requests needs botocore, which comes with "
            "the aws extra: pip install 'tarry[aws]'"
        ) from None
    try:
        session = botocore.session.Session()
        credentials = session.get_credentials()
        region = (
            region_from_url(url)
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or session.get_config_variable("region")
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        # a profile that does not exist, an SSO session that expired, a refused AssumeRole
        raise SigningError(f"no AWS credentials to sign the admin request: {exc}") from exc
    if credentials is None:
        raise SigningError(
            "no AWS credentials to sign the admin request: none in the environment "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), the shared files (AWS_PROFILE, "
            "~/.aws/credentials, ~/.aws/config), an SSO session or an instance role "
            "(`aws configure` or `aws sso login` sets them up)"
        )
    if not region:
        raise SigningError(
            f"no AWS region to sign the admin request for: {url} names none; "
            "set AWS_REGION (or the profile's region)"
        )
    profile = session.get_config_variable("profile")
    source = ", ".join(x for x in (credentials.method, profile and f"profile {profile}") if x)
    return SigV4(credentials, region, source=source)


__all__ = [
    "SERVICE",
    "SigV4",
    "SigningError",
    "canonical_query",
    "is_aws_endpoint",
    "region_from_url",
    "signer_for",
]
