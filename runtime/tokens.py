"""Checkpoint tokens: what lets an HTTP deployment append to the attempt it serves.

A token names an invocation and an attempt epoch and is signed (HMAC-SHA256) with a key the
runtime's processes share, so any of them can verify it without having issued it; the store's
epoch fence then refuses it once its attempt is over. Without the key nobody can make one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

_SECRET_ENV = "TARRY_CHECKPOINT_SECRET"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, key: bytes | None = None) -> None:
        """``key``: shared by every process that may receive a token; by default
        ``TARRY_CHECKPOINT_SECRET`` (hex or text), else a random one for this process only."""
        if key is None:
            configured = os.environ.get(_SECRET_ENV)
            key = configured.encode() if configured else os.urandom(32)
        if len(key) < 16:
            raise ValueError(f"{_SECRET_ENV} must be at least 16 bytes")
        self._key = key

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, invocation_id: str, epoch: int) -> str:
        payload = _b64(json.dumps([invocation_id, epoch], separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str) -> tuple[str, int] | None:
        """The (invocation id, epoch) a token was issued for; ``None`` if it is not one of ours."""
        payload, _, mac = token.partition(".")
        if not payload or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            invocation_id, epoch = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            return None
        if not isinstance(invocation_id, str) or not isinstance(epoch, int):
            return None
        return invocation_id, epoch


__all__ = ["TokenSigner"]
