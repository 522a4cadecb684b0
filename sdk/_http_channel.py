"""The HTTP checkpoint channel: a deployment behind HTTP appends ``ctx.run`` results to the
runtime mid-attempt, instead of ending the request after every step."""

from __future__ import annotations

import httpx

from .errors import TerminalError
from .protocol import CheckpointAppend, CheckpointRejected, Command, Completion
from .serde import dumps


class HttpCheckpointChannel:
    """Posts appends to the runtime's checkpoint URL with this attempt's bearer token."""

    def __init__(self, client: httpx.AsyncClient, url: str, token: str) -> None:
        self._client = client
        self._url = url
        self._headers = {
            "authorization": f"Bearer {token}",
            "content-type": "application/json",
        }

    async def append(self, commands: list[Command], completions: dict[str, Completion]) -> None:
        body: CheckpointAppend = {"commands": commands, "completions": completions}
        reply = await self._client.post(self._url, content=dumps(body), headers=self._headers)
        if reply.status_code == 413:  # a value over the limit: nothing was stored, nor ever will
            raise TerminalError(_message(reply), status_code=413)
        if reply.status_code != 204:
            raise CheckpointRejected(f"checkpoint answered {reply.status_code}: {reply.text[:200]}")


def _message(reply: httpx.Response) -> str:
    try:
        message = reply.json()["message"]
    except (ValueError, KeyError, TypeError):
        return reply.text[:500]
    return str(message)


__all__ = ["HttpCheckpointChannel"]
