r"""Registration: a workflow that creates an account, emails a verification link and waits on a
durable promise until the link is used, then sends a welcome email.

`run` runs once per workflow key; `verify_email` and `status` are shared handlers that work
while `run` waits.

tarry dev examples/registration.py
curl localhost:8080/Registration/ada-1/run/send --json '{"email": "ada@example.com", "name": "Ada"}'
curl -X POST localhost:8080/Registration/ada-1/status
# the verification "email" is a line in registration_outbox.jsonl: post its token to its link
read -r LINK TOKEN < <(tail -1 registration_outbox.jsonl | \
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(m["link"], json.dumps(m["token"]))')
curl "$LINK" --json "$TOKEN"
curl localhost:8080/restate/workflow/Registration/ada-1/output

The link in the email points at $TARRY_INGRESS_URL (default http://127.0.0.1:8080): on another
port, say so where tarry runs, `TARRY_INGRESS_URL=http://127.0.0.1:8181 tarry dev
examples/registration.py --ingress-port 8181`.
"""

import json
import os
import secrets
from pathlib import Path
from typing import TypedDict

import tarry
from tarry import TerminalError

INGRESS = os.environ.get("TARRY_INGRESS_URL", "http://127.0.0.1:8080")


class Registrant(TypedDict):
    email: str
    name: str


def _outbox(line: dict[str, str]) -> None:
    outbox = Path(os.environ.get("REGISTRATION_OUTBOX", "registration_outbox.jsonl"))
    with outbox.open("a") as out:
        out.write(json.dumps(line) + "\n")


def create_account(email: str, name: str) -> str:
    """Stands in for the account system: returns the new account's id."""
    return "acct_" + secrets.token_hex(6)


def new_token() -> str:
    """The verification token: a capability (whoever holds it verifies the email), so from the
    OS's CSPRNG in a journaled step, never from ``ctx.random``, which is seeded for replay."""
    return secrets.token_urlsafe(32)


def send_verification_email(workflow_key: str, email: str, token: str) -> None:
    # A real email would link to a page that POSTs the token; the outbox keeps both.
    link = f"{INGRESS}/Registration/{workflow_key}/verify_email"
    _outbox({"workflow_key": workflow_key, "email": email, "token": token, "link": link})


def send_welcome_email(workflow_key: str, email: str, name: str) -> None:
    _outbox({"workflow_key": workflow_key, "email": email, "welcome": f"Welcome, {name}!"})


registration = tarry.Workflow("Registration")


@registration.main()
async def run(ctx: tarry.WorkflowContext, who: Registrant) -> str:
    key = ctx.key()
    ctx.set("stage", "creating account")
    account = await ctx.run("create account", create_account, who["email"], who["name"])
    ctx.set("account", account)
    token = await ctx.run("make token", new_token)  # journaled: the same on every replay
    ctx.set("token", token)
    await ctx.run("send verification email", send_verification_email, key, who["email"], token)
    ctx.set("stage", "waiting for email verification")
    await ctx.promise("email-verified").value()
    ctx.set("stage", "sending welcome email")
    await ctx.run("send welcome email", send_welcome_email, key, who["email"], who["name"])
    ctx.set("stage", "activated")
    return "activated"


@registration.handler()
async def verify_email(ctx: tarry.WorkflowSharedContext, token: str) -> str:
    """Resolve the `email-verified` promise if the token is the one that was emailed."""
    expected = await ctx.get("token")
    if expected is None:
        raise TerminalError("no verification email was sent for this registration", 409)
    if not isinstance(token, str) or not secrets.compare_digest(token, expected):
        raise TerminalError("this verification link is not valid", 400)
    if await ctx.promise("email-verified").peek() is None:
        ctx.promise("email-verified").resolve(True)
    return "verified"


@registration.handler()
async def status(ctx: tarry.WorkflowSharedContext) -> str:
    """Where the workflow is: a stage name, or "not started"."""
    stage: str | None = await ctx.get("stage")
    return stage or "not started"


app = tarry.app([registration])
