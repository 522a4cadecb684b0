"""Awakeables: a durable future that something outside the handler completes by id — a person
clicking a link, a webhook, another handler.

The id names the journal entry that waits, so a replay hands out the same id, and a completion
that arrives before the handler suspends (or before the entry is even stored) is kept. It is a
capability, unguessable without the invocation's secret (see
:func:`tarry.protocol.awakeable_id`): hand it only to whoever may complete the awakeable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tarry.protocol import Completion, awakeable_id
from tarry.serde import to_json

from .base import DurableFuture

if TYPE_CHECKING:
    from tarry._attempt import Attempt


def awakeable(attempt: Attempt, result_type: Any = Any) -> tuple[str, DurableFuture[Any]]:
    index = attempt.journal_position()
    secret = attempt.request.get("secret")
    if not secret and attempt.journal.recorded_at(index) is None:
        raise RuntimeError(
            "the invoke request carries no secret to make an awakeable's id with: the runtime "
            "is older than this SDK; upgrade it"
        )
    awk_id = awakeable_id(attempt.request["invocation_id"], index, secret) if secret else ""
    # On replay, the id recorded: the one the first attempt handed out.
    _, recorded = attempt.record({"kind": "awakeable", "name": "", "awakeable_id": awk_id})
    return recorded["awakeable_id"], attempt.future(index, result_type)


def complete(attempt: Attempt, awk_id: str, completion: Completion) -> DurableFuture[None]:
    """Journal the completion of awakeable ``awk_id``; the runtime delivers it. The returned
    future fails with 409 if the awakeable was completed before (the first completion stands)
    and with 404 if there is no such awakeable; awaiting it is optional."""
    index, _ = attempt.record(
        {"kind": "complete_awakeable", "name": awk_id, "awakeable_id": awk_id,
         "completion": completion}
    )  # fmt: skip
    future: DurableFuture[None] = attempt.future(index, None)
    return future


def resolution(value: Any) -> Completion:
    return {"value": to_json(value)}


def rejection(message: str, code: int = 500) -> Completion:
    return {"failure": {"code": code, "message": message}}
