"""Signup: a user signs up and is activated when they click the link in their email.

The signup waits for the click on an awakeable: no compute runs while it waits, and it survives
the runtime being killed and restarted. Cancel it while it waits and it removes the user it
created (a saga's compensation).

The password is hashed in a journaled step, so the User object's journal and state never hold
it; the Signup invocation's own journal keeps its input until the invocation is purged
(`tarry invocations purge ID`).

tarry dev examples/signup.py
curl localhost:8080/Signup/signup --json '{"username": "ada", "name": "Ada",
    "surname": "Lovelace", "password": "s3cret", "email": "ada@example.com"}'
# in another shell: the "email" is a line in outbox.jsonl; "click" its link
LINK=$(tail -1 outbox.jsonl | python3 -c 'import json,sys; print(json.load(sys.stdin)["link"])')
curl -X POST "$LINK"
curl -X POST localhost:8080/User/ada/get

The link in the email points at $TARRY_INGRESS_URL (default http://127.0.0.1:8080): on another
port, say so where tarry runs, `TARRY_INGRESS_URL=http://127.0.0.1:8181 tarry dev
examples/signup.py --ingress-port 8181`. The awakeable id in the link is a capability: whoever
holds it can resolve it, like a password-reset link, so it goes only to the user's email.
"""

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, TypedDict

import tarry
from tarry import TerminalError

INGRESS = os.environ.get("TARRY_INGRESS_URL", "http://127.0.0.1:8080")


class SignupRequest(TypedDict):
    username: str
    name: str
    surname: str
    password: str
    email: str


class NewUser(TypedDict):
    name: str
    surname: str
    email: str
    password_hash: str


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


user = tarry.VirtualObject("User")


@user.handler(kind="shared")
async def get(ctx: tarry.ObjectSharedContext) -> dict[str, Any] | None:
    """The user, or null if there is none; never its password hash (a caller could try
    passwords against it offline)."""
    stored: dict[str, Any] | None = await ctx.get("user")
    if stored is None:
        return None
    return {name: value for name, value in stored.items() if name != "password_hash"}


@user.handler()
async def initialize(ctx: tarry.ObjectContext, new: NewUser) -> None:
    """Store a new, not yet activated user; 409 if the username is taken."""
    if await ctx.get("user") is not None:
        raise TerminalError(f"the user {ctx.key()} already exists", status_code=409)
    ctx.set("user", {"username": ctx.key(), **new, "activated": False})


@user.handler()
async def activate(ctx: tarry.ObjectContext) -> None:
    stored = await ctx.get("user")
    if stored is None:
        raise TerminalError(f"there is no user {ctx.key()}", status_code=404)
    ctx.set("user", {**stored, "activated": True})


@user.handler()
async def remove(ctx: tarry.ObjectContext) -> None:
    ctx.clear_all()


def send_activation_email(username: str, email: str, awakeable_id: str) -> str:
    """The example's email sender: one JSON line in the outbox file per email."""
    link = f"{INGRESS}/restate/awakeables/{awakeable_id}/resolve"
    outbox = Path(os.environ.get("SIGNUP_OUTBOX", "outbox.jsonl"))
    line = json.dumps({"username": username, "email": email, "awakeable_id": awakeable_id,
                       "link": link})  # fmt: skip
    with outbox.open("a") as out:
        out.write(line + "\n")
    return secrets.token_hex(8)  # the "message id" a mail service would return


signup = tarry.Service("Signup")


@signup.handler("signup")
async def signup_user(ctx: tarry.Context, req: SignupRequest) -> str:
    """Create the user, email an activation link, wait for the click, activate."""
    username = req["username"]
    # Hashed in a step, so the User's journal and state never see the password itself.
    password_hash = await ctx.run("hash password", hash_password, req["password"])
    new: NewUser = {"name": req["name"], "surname": req["surname"], "email": req["email"],
                    "password_hash": password_hash}  # fmt: skip
    await ctx.object_call(initialize, key=username, arg=new)
    try:
        awakeable_id, clicked = ctx.awakeable()
        await ctx.run("send activation email", send_activation_email, username, req["email"],
                      awakeable_id)  # fmt: skip
        await clicked
    except TerminalError:
        # Cancelled (or the link was rejected) while waiting: undo what this signup did.
        await ctx.object_call(remove, key=username)
        raise
    await ctx.object_call(activate, key=username)
    return f"The new user {username} is signed up and activated"


app = tarry.app([user, signup])
