"""Who may use the admin API, which can register a deployment that takes over a service and then
read and write its state: it is guarded as a capability, safe by default.

- **No browser can forge a change.** A state-changing request (``POST``, ``PATCH``, ``PUT``,
  ``DELETE``) must say ``Content-Type: application/json`` (a page on another site cannot send
  that without a CORS preflight, which this API never grants) and must not come from another
  origin (``Origin`` or ``Sec-Fetch-Site`` saying so is refused with 403).
- **A token, beyond loopback.** With a token (``TARRY_ADMIN_TOKEN``, or a file given by
  ``--admin-token-file``), every request but ``GET /health`` carries ``Authorization: Bearer
  TOKEN``; the runtime refuses to listen beyond loopback without one.
- **No DNS rebinding.** Without a token the API listens on loopback only, and answers only
  requests addressed to a loopback name (``Host: 127.0.0.1:9070``, ``localhost``, ``[::1]``), so
  a page whose name was made to resolve to 127.0.0.1 gets 403.
- On AWS the admin function sits behind API Gateway's IAM authorisation instead (a SigV4
  signature carries the caller's identity); there the guard checks the first point only.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_ENV = "TARRY_ADMIN_TOKEN"
MIN_TOKEN_CHARS = 16
_CHANGES = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_OPEN = frozenset({("GET", "/health")})  # a liveness probe learns nothing


class AdminTokenError(ValueError):
    """The admin token cannot be had or is too weak; the message says what to do."""


def load_token(token_file: str | Path | None, environ: dict[str, str] | None = None) -> str | None:
    """The admin token from ``token_file`` if one is given, else from ``TARRY_ADMIN_TOKEN``;
    ``None`` if neither is set.

    >>> load_token(None, {"TARRY_ADMIN_TOKEN": "  s3cret-s3cret-s3cret \\n"})
    's3cret-s3cret-s3cret'
    >>> load_token(None, {}) is None
    True
    """
    env = os.environ if environ is None else environ
    if token_file is not None:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise AdminTokenError(
                f"cannot read the admin token file {token_file}: {exc.strerror}"
            ) from None
        where = f"the admin token file {token_file}"
    else:
        token = env.get(TOKEN_ENV, "").strip()
        if not token:
            return None
        where = TOKEN_ENV
    if len(token) < MIN_TOKEN_CHARS or not token.isprintable() or not token.isascii():
        raise AdminTokenError(
            f"{where} must hold at least {MIN_TOKEN_CHARS} printable ASCII characters "
            "(make one with `openssl rand -hex 32`)"
        )
    return token


def is_loopback(host: str) -> bool:
    """Whether an address to listen on, or a ``Host`` header's name, is this machine only.

    >>> [is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0", "10.0.0.5")]
    [True, True, True, True, False, False]
    """
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """``Host``'s name without its port: ``[::1]:9070`` → ``[::1]``, ``a:80`` → ``a``."""
    if host_header.startswith("["):
        return host_header.partition("]")[0] + "]"
    return host_header.rpartition(":")[0] if ":" in host_header else host_header


def _origin_authority(origin: str) -> str | None:
    """``https://a.example:8443`` → ``a.example:8443``; ``None`` for ``null`` and the like."""
    scheme, sep, rest = origin.partition("://")
    if not sep or not scheme or not rest:
        return None
    return rest.rstrip("/").lower()


@dataclass(frozen=True)
class AdminGuard:
    """ASGI middleware that applies the rules above to the admin app.

    ``token``: required on every request when set. ``loopback_only``: refuse requests whose
    ``Host`` is not a loopback name (the tokenless local API; off behind API Gateway).
    """

    app: ASGIApp
    token: str | None = None
    loopback_only: bool = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message, headers = refusal
        reply = JSONResponse({"code": status, "message": message}, status, headers=headers)
        await reply(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method: str = scope["method"]
        host = headers.get("host", "")
        if self.loopback_only and self.token is None and not is_loopback(_host_name(host)):
            return 403, (
                f"the admin API answers requests addressed to this machine only, not to "
                f"{host or 'no Host'!r}; to reach it from elsewhere, run it with an admin token "
                f"({TOKEN_ENV} or --admin-token-file)"
            ), {}
        if self.token is not None and (method, scope["path"]) not in _OPEN:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), self.token.encode()
            ):
                return 401, (
                    "the admin API needs its token: send Authorization: Bearer TOKEN "
                    f"(the tarry CLI sends {TOKEN_ENV} or --admin-token-file's)"
                ), {"www-authenticate": 'Bearer realm="tarry admin"'}
        if method not in _CHANGES:
            return None
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return 403, "cross-site requests may not change anything through the admin API", {}
        origin = headers.get("origin")
        if origin is not None and _origin_authority(origin) != host.lower():
            return 403, (
                f"a request from origin {origin!r} may not change anything through the admin "
                "API (only same-origin requests may)"
            ), {}
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            return 415, (
                "a request that changes something must say Content-Type: application/json "
                f"(it said {media_type or 'none'!r})"
            ), {}
        return None


__all__ = ["TOKEN_ENV", "AdminGuard", "AdminTokenError", "is_loopback", "load_token"]
