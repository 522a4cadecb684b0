"""The ``tarry`` command line: run the runtime (``dev``, ``serve``) and talk to its admin API."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import json
import logging
import os
import socket
import subprocess
import sys
import time
import traceback
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx

from tarry.protocol import COMPLETABLE

from .admin_auth import TOKEN_ENV, AdminTokenError, is_loopback, load_token
from .sigv4 import SigningError, SigV4, is_aws_endpoint, signer_for
from .store import STATUS_FILTERS

if TYPE_CHECKING:
    from .store.identity import RuntimeIdentity

DEFAULT_ADMIN_URL = "http://127.0.0.1:9070"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-5s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # not a line per deployment request, nor per AWS credential lookup
    for noisy in ("httpx", "botocore", "aiobotocore", "aioboto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _runtime_options(fn: Any) -> Any:
    options = [
        click.option(
            "--host", default="127.0.0.1", show_default=True, help="Address the ingress listens on."
        ),
        click.option(
            "--ingress-port", default=8080, show_default=True, type=click.IntRange(0, 65535)
        ),
        click.option(
            "--admin-host",
            default="127.0.0.1",
            show_default=True,
            help="Address the admin API listens on: loopback, unless it has a token.",
        ),
        click.option(
            "--admin-token-file",
            type=click.Path(dir_okay=False),
            help=f"A file holding the admin API's token (else {TOKEN_ENV}); every admin "
            "request must then carry it. Required to listen beyond loopback.",
        ),
        click.option(
            "--admin-port", default=9070, show_default=True, type=click.IntRange(0, 65535)
        ),
        click.option(
            "--max-attempts",
            default=30,
            show_default=True,
            type=click.IntRange(1),
            help="Failed attempts in a row after which an invocation is paused.",
        ),
        click.option(
            "--attempt-timeout",
            default="10m",
            show_default=True,
            help="How long an attempt may go without making anything durable (each step "
            "stored starts it again); past it the attempt is abandoned and retried from its "
            "journal, and counts against --max-attempts.",
        ),
        click.option(
            "--max-body-bytes",
            default=10 * 1024 * 1024,
            show_default=True,
            type=click.IntRange(1),
            help="Largest request body the ingress accepts.",
        ),
        click.option(
            "--idempotency-retention",
            default="24h",
            show_default=True,
            help="How long a completed idempotent result is kept (e.g. 24h, 30m).",
        ),
        click.option(
            "--advertised-url",
            help="The ingress's URL as HTTP deployments reach it (default: from --host and "
            "--ingress-port); they post ctx.run results back to it.",
        ),
        click.option(
            "--http-checkpoints/--no-http-checkpoints",
            default=True,
            show_default=True,
            help="Let HTTP deployments checkpoint steps mid-request (else one request per step).",
        ),
        click.option(
            "--shutdown-grace",
            default="5s",
            show_default=True,
            help="On SIGTERM or Ctrl-C, how long attempts in flight may take to end; callers "
            "waiting get 503 at once, and a second signal stops at once.",
        ),
        click.option("-v", "--verbose", is_flag=True, help="Log debug detail."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _listen(host: str, port: int, host_flag: str, port_flag: str) -> socket.socket:
    """A listening socket, bound before anything starts, so a taken port or an address this
    machine does not have is a clear error naming the option to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            fix = f"choose another {port_flag}"
        else:  # an unknown name, or an address not on this machine
            fix = f"give {host_flag} an address of this machine, such as 127.0.0.1 or 0.0.0.0"
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror} ({fix})"
        ) from exc
    sock.listen(2048)
    return sock


def _local_url(host: str, port: int) -> str:
    """The URL this machine reaches a server bound to ``host:port`` at."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _run_runtime(
    store_url: str,
    services: list[Any],
    opts: dict[str, Any],
    store_flag: str = "--store",
    identity_dir: Path | None = None,
) -> None:
    """Run the runtime until told to stop. ``store_flag``: the option that named the store, for
    messages about it (``tarry dev`` has its SQLite store in ``--data-dir``). ``identity_dir``:
    where this runtime keeps the identity it holds on a store other processes share, so that
    when it restarts it takes over at once what it left running (:mod:`.store.identity`)."""
    from .durations import DurationError, parse_duration_ms
    from .ingress import IngressConfig
    from .invoker import RetryConfig
    from .server import Runtime, serve
    from .store import StoreError, describe_store, open_store

    try:
        retention = parse_duration_ms(opts["idempotency_retention"])
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--idempotency-retention") from exc
    try:
        grace_s = parse_duration_ms(opts["shutdown_grace"]) / 1000
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--shutdown-grace") from exc
    try:
        attempt_timeout_ms = parse_duration_ms(opts["attempt_timeout"])
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--attempt-timeout") from exc
    if attempt_timeout_ms < 1:
        raise click.BadParameter("it must be at least 1 ms", param_hint="--attempt-timeout")
    try:
        admin_token = load_token(opts["admin_token_file"])
    except AdminTokenError as exc:
        raise click.BadParameter(str(exc), param_hint="--admin-token-file") from exc
    if admin_token is None and not is_loopback(opts["admin_host"]):
        raise click.UsageError(
            f"--admin-host {opts['admin_host']} would let anyone who reaches it register "
            "deployments and read and write state: give the admin API a token "
            f"({TOKEN_ENV}, or --admin-token-file FILE; make one with `openssl rand -hex 32`), "
            "or keep it on loopback"
        )
    _setup_logging(opts["verbose"])

    sockets = [
        _listen(opts["host"], opts["ingress_port"], "--host", "--ingress-port"),
        _listen(opts["admin_host"], opts["admin_port"], "--admin-host", "--admin-port"),
    ]

    identity = _hold_identity(store_url, identity_dir)

    async def main() -> None:
        try:
            store = open_store(store_url, identity.name if identity is not None else None)
        except ValueError as exc:  # a URL it does not take
            raise click.BadParameter(str(exc), param_hint=store_flag) from exc
        except StoreError as exc:  # it cannot be used (a bad file, another runtime's): one line
            raise click.ClickException(f"Invalid value for {store_flag}: {exc}") from exc
        check = getattr(store, "check", None)  # a remote store: is it there, can we use it?
        if check is not None:
            try:
                await check()
            except StoreError as exc:
                await store.close()
                raise click.ClickException(str(exc)) from exc
        advertised = opts["advertised_url"] or _local_url(opts["host"], opts["ingress_port"])
        runtime = Runtime(
            store,
            advertised_url=advertised if opts["http_checkpoints"] else None,
            retry=RetryConfig(
                max_attempts=opts["max_attempts"], attempt_timeout_ms=attempt_timeout_ms
            ),
            ingress=IngressConfig(
                max_body_bytes=opts["max_body_bytes"], idempotency_retention_ms=retention
            ),
        )
        try:
            await runtime.start(services)
            click.echo(
                f"tarry: ingress on http://{opts['host']}:{opts['ingress_port']}, "
                f"admin API on http://{opts['admin_host']}:{opts['admin_port']}, "
                f"store {describe_store(store)}",
                err=True,
            )
            await serve(runtime, sockets[0], sockets[1], admin_token=admin_token, grace_s=grace_s)
        finally:
            await runtime.stop()

    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(main())
        else:
            uvloop.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        if identity is not None:
            identity.close()


def _hold_identity(store_url: str, directory: Path | None) -> RuntimeIdentity | None:
    """The identity in ``directory``, held for this process, for a DynamoDB store; ``None``
    (said in the log) if another process holds it or the directory cannot be used: the
    runtime then runs without one, as ``tarry serve`` does."""
    from .store.identity import IdentityHeld, RuntimeIdentity

    if directory is None or not store_url.startswith("dynamodb://"):
        return None
    try:
        return RuntimeIdentity.hold(directory)
    except IdentityHeld as exc:
        logging.getLogger("tarry.runtime").warning(
            "%s: this runtime runs without one, so what it leaves running when it stops is "
            "taken over when its leases lapse, not as soon as it restarts", exc
        )
        return None


@click.group()
@click.version_option(package_name="tarry")
def main() -> None:
    """tarry: durable execution for Python, in the style of Restate."""


_STORE_HELP = (
    "Where state lives: sqlite:///relative/path, sqlite:////absolute/path, or dynamodb://TABLE "
    "(endpoint, region and credentials from the standard AWS settings, e.g. "
    "AWS_ENDPOINT_URL_DYNAMODB; create the table with `tarry dynamodb create-table`)."
)


@main.command()
@click.argument("app")
@click.option(
    "--data-dir",
    default=".tarry",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the SQLite store lives; restart with the same one to resume. With --store "
    "dynamodb://: where this runtime keeps its identity, so that restarted it takes over at "
    "once what it left running.",
)
@click.option("--store", "store_url", help=_STORE_HELP + " [default: SQLite in --data-dir]")
@_runtime_options
def dev(app: str, data_dir: str, store_url: str | None, **opts: Any) -> None:
    """Run APP's services and the runtime in one process.

    APP is a file (examples/greeter.py) or a module (examples.greeter, or module:attr).
    """
    from .loader import AppError, load_services

    try:
        services = load_services(app)
    except AppError as exc:
        if opts["verbose"] and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        raise click.ClickException(str(exc)) from exc
    path = Path(data_dir) / "tarry.db"
    if store_url is None:
        _run_runtime(f"sqlite:///{path}", services, opts, "--data-dir")
    else:
        _run_runtime(store_url, services, opts, identity_dir=Path(data_dir))


@main.command()
@click.option(
    "--store",
    "store_url",
    default="sqlite:///.tarry/tarry.db",
    show_default=True,
    help=_STORE_HELP,
)
@_runtime_options
def serve(store_url: str, **opts: Any) -> None:
    """Run the runtime alone; register HTTP deployments with `tarry deployments register`."""
    _run_runtime(store_url, [], opts)


@main.group()
def dynamodb() -> None:
    """Set up the DynamoDB store (endpoint, region, credentials: the standard AWS settings)."""


@dynamodb.command("create-table")
@click.argument("name")
def dynamodb_create_table(name: str) -> None:
    """Create table NAME as infra/table.yaml defines it and wait until it is ACTIVE.

    Does nothing to a table that exists already. Then: tarry serve --store dynamodb://NAME
    """
    from .store.dynamodb import DynamoDBStore
    from .store.dynamodb_table import create_table

    async def create() -> bool:
        store = DynamoDBStore(name)
        try:
            return await create_table(await store.client(), name)
        finally:
            await store.close()

    try:
        created = asyncio.run(create())
    except Exception as exc:  # botocore's errors: no endpoint, no credentials, access denied
        raise click.ClickException(f"cannot create table {name}: {exc}") from exc
    click.echo(f"table {name} {'created' if created else 'exists already'}; it is ACTIVE")


@main.group("lambda")
def lambda_() -> None:
    """Package an app as a Lambda function."""


@lambda_.command("package")
@click.argument("app", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the zip (default: build/APP.zip).",
)
@click.option(
    "--include",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="A file or folder to add as it is (a folder of packages from pip install --target, "
    "say); repeatable.",
)
@click.option(
    "--python",
    default=None,
    help="A Python 3.12 interpreter to compile the package with (default: python3.12, if one "
    "runs); without one, the zip holds sources and each cold start compiles them.",
)
def lambda_package(
    app: Path, output: Path | None, include: tuple[Path, ...], python: str | None
) -> None:
    """Write APP's deployment package: the module, tarry's SDK and Lambda adapter, and an
    entry module. Deploy it with runtime python3.12 and the handler it names, publish a
    version, then: tarry deployments register arn:aws:lambda:...:function:NAME:1"""
    from .lambda_package import package
    from .loader import AppError

    try:
        made = package(app, output or Path("build") / f"{app.stem}.zip", list(include), python)
    except AppError as exc:
        raise click.ClickException(str(exc)) from exc
    except subprocess.CalledProcessError as exc:
        raise click.ClickException(f"compiling the package failed: {exc.stderr}") from exc
    click.echo(
        f"{made.path}: {made.files} files, {made.size // 1024} KB"
        f"{', compiled' if made.compiled else ' (sources only: no python3.12 to compile them)'}; "
        f"handler {made.handler}, runtime python3.12"
    )


# -- admin API clients ---------------------------------------------------------------------


def _remember_sign(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    ctx.meta["tarry.admin_sign"] = value


def _remember_token_file(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    ctx.meta["tarry.admin_token_file"] = value


def admin_url_option(fn: Any) -> Any:
    """``--admin-url``, ``--admin-token-file`` and ``--sign``, for every command that talks to
    the admin API."""
    fn = click.option(
        "--admin-token-file",
        type=click.Path(dir_okay=False),
        expose_value=False,
        callback=_remember_token_file,
        help=f"A file holding the admin API's token (else {TOKEN_ENV}), for a runtime that "
        "has one: one listening beyond loopback must.",
    )(fn)
    fn = click.option(
        "--sign",
        is_flag=True,
        envvar="TARRY_ADMIN_SIGV4",
        expose_value=False,  # _admin reads it from the context: commands need not pass it on
        callback=_remember_sign,
        help="Sign admin requests with SigV4 (AWS credentials) even though the admin URL is "
        "not one of API Gateway's (which are signed anyway); or set TARRY_ADMIN_SIGV4=1.",
    )(fn)
    return click.option(
        "--admin-url",
        envvar="TARRY_ADMIN_URL",
        default=DEFAULT_ADMIN_URL,
        show_default=True,
        help="The runtime's admin API (or set TARRY_ADMIN_URL); behind API Gateway, its "
        "stage's URL, and requests are signed with the standard AWS credentials.",
    )(fn)


def _admin_auth(url: str) -> SigV4 | None:
    """The signer for requests to ``url``, when they are signed: an API Gateway URL, or
    ``--sign``. Made once per command (a role's or SSO's credentials are fetched once)."""
    ctx = click.get_current_context(silent=True)
    meta: dict[str, Any] = ctx.meta if ctx is not None else {}
    if not (meta.get("tarry.admin_sign") or is_aws_endpoint(url)):
        return None
    signers: dict[str, SigV4] = meta.setdefault("tarry.admin_signers", {})
    if url not in signers:
        try:
            signers[url] = signer_for(url)
        except SigningError as exc:
            raise click.ClickException(str(exc)) from None
    return signers[url]


def _admin_headers(auth: SigV4 | None, method: str) -> dict[str, str]:
    """The admin API's token (unless SigV4 signs the request, as behind API Gateway), and the
    JSON content type it asks of every request that changes something."""
    headers = {"content-type": "application/json"} if method != "GET" else {}
    if auth is None:
        ctx = click.get_current_context(silent=True)
        token_file = ctx.meta.get("tarry.admin_token_file") if ctx is not None else None
        try:
            token = load_token(token_file)
        except AdminTokenError as exc:
            raise click.ClickException(str(exc)) from None
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
    return headers


def _admin(method: str, url: str, path: str, **kwargs: Any) -> Any:
    auth = _admin_auth(url)
    headers = _admin_headers(auth, method)
    try:
        reply = httpx.request(
            method, url.rstrip("/") + path, timeout=30, auth=auth, headers=headers, **kwargs
        )
    except SigningError as exc:
        raise click.ClickException(str(exc)) from None
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"cannot reach the tarry admin API at {url} ({exc.__class__.__name__}); "
            "is `tarry dev` or `tarry serve` running?"
        ) from exc
    try:
        data = reply.json()
    except ValueError:
        data = {"message": reply.text}
    message = data.get("message", data) if isinstance(data, dict) else data
    # API Gateway's refusals carry x-amzn-ErrorType; the admin API itself never answers 403
    if reply.status_code == 403 and (auth is not None or "x-amzn-errortype" in reply.headers):
        raise click.ClickException(_refused(url, message, auth))
    if reply.status_code >= 400:
        raise click.ClickException(f"{reply.status_code}: {message}")
    return data


def _refused(url: str, message: Any, auth: SigV4 | None) -> str:
    """API Gateway's 403 in words: who signed, or that nobody did."""
    said = str(message).rstrip(".")
    if auth is None:
        return (
            f"403: {said}; API Gateway refused an unsigned request: if the admin API at {url} "
            "has IAM authorisation, sign with --sign (or TARRY_ADMIN_SIGV4=1)"
        )
    hint = (
        " (API Gateway says this too for a path or stage it does not have: does the admin "
        "URL end with the stage?)"
        if said == "Missing Authentication Token"
        else ""
    )
    return (
        f"403: {said}; the admin API's IAM authorisation refused the request, signed with "
        f"{auth.identity()} for region {auth.region}{hint}"
    )


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@main.group()
def deployments() -> None:
    """Register and list deployments."""


@deployments.command("register")
@click.argument("target")
@click.option(
    "--assume-role-arn",
    default=None,
    help="Lambda: a role the runtime assumes to invoke the function.",
)
@click.option(
    "--latest",
    is_flag=True,
    help="Lambda: register $LATEST (or an unqualified ARN). For development only: a waiting "
    "invocation replays its journal on whatever code $LATEST has by then.",
)
@admin_url_option
def deployments_register(
    target: str, assume_role_arn: str | None, latest: bool, admin_url: str
) -> None:
    """Register a deployment: an HTTP URL, or a Lambda function version's ARN
    (arn:aws:lambda:REGION:ACCOUNT:function:NAME:VERSION; an alias is resolved to its version).
    Discovery runs, and its services take their new invocations there."""
    body: dict[str, Any]
    if target.startswith("arn:"):
        body = {"arn": target, "latest": latest}
        if assume_role_arn is not None:
            body["assume_role_arn"] = assume_role_arn
    elif assume_role_arn is not None or latest:
        raise click.UsageError("--assume-role-arn and --latest apply to Lambda ARNs only")
    else:
        body = {"uri": target}
    if latest:
        click.echo(
            "warning: registering $LATEST, for development only: invocations that wait replay "
            "their journal on whatever code $LATEST has then",
            err=True,
        )
    data = _admin("POST", admin_url, "/deployments", json=body)
    click.echo(f"registered {data['id']} at {data['uri']}: {', '.join(data['services'])}")


@deployments.command("ls")
@admin_url_option
def deployments_ls(admin_url: str) -> None:
    """List deployments: the services of each, how many invocations that have not completed
    run on it, and whether it takes its services' new invocations."""
    data = _admin("GET", admin_url, "/deployments")
    rows = [
        [
            d["id"],
            d["uri"],
            ", ".join(d["services"]),
            str(d.get("invocations", 0)),
            "yes" if d.get("serving") else "no",
            _when(d.get("registered_at") or d["created_at"]),
        ]
        for d in data["deployments"]
    ]
    click.echo(_table(rows, ["id", "uri", "services", "invocations", "new", "registered"]))


@deployments.command("rm")
@click.argument("deployment_id")
@click.option(
    "--force",
    is_flag=True,
    help="Remove it even though invocations still run on it (they are paused until it is "
    "registered again).",
)
@admin_url_option
def deployments_rm(deployment_id: str, force: bool, admin_url: str) -> None:
    """Remove a deployment (refused while invocations that have not completed run on it)."""
    path = f"/deployments/{_quote(deployment_id)}" + ("?force=true" if force else "")
    data = _admin("DELETE", admin_url, path)
    had = data.get("invocations", 0)
    click.echo(f"removed {deployment_id}" + (f" ({had} invocations paused)" if had else ""))


@main.group()
def services() -> None:
    """List services."""


@services.command("ls")
@admin_url_option
def services_ls(admin_url: str) -> None:
    """List services and their handlers."""
    data = _admin("GET", admin_url, "/services")
    rows = []
    for s in data["services"]:
        handlers = ", ".join(
            h["name"]
            + ("" if h["kind"] in ("shared",) and s["kind"] == "service" else f" ({h['kind']})")
            for h in s["handlers"]
        )
        rows.append([s["name"], s["kind"], handlers, s["uri"]])
    click.echo(_table(rows, ["service", "kind", "handlers", "deployment"]))


@main.group()
def invocations() -> None:
    """List and inspect invocations."""


@invocations.command("ls")
@click.option("--service", help="Only this service's invocations.")
@click.option(
    "--status",
    type=click.Choice(STATUS_FILTERS),
    help="Only invocations in this status; `succeeded`/`failed`: completed ones that ended so.",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until Ctrl-C.")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.1))
@admin_url_option
def invocations_ls(
    service: str | None,
    status: str | None,
    limit: int,
    watch: bool,
    interval: float,
    admin_url: str,
) -> None:
    """List invocations, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if service:
        params["service"] = service
    if status:
        params["status"] = status
    while True:
        data = _admin("GET", admin_url, "/invocations", params=params)
        rows = [
            [i["id"], i["target"], _status(i), str(i["attempts"]), _when(i["created_at"])]
            for i in data["invocations"]
        ]
        table = _table(rows, ["id", "target", "status", "attempts", "created"])
        if len(rows) == limit:
            table += f"\n(the newest {limit}; --limit N for more)"
        if not watch:
            click.echo(table)
            return
        click.clear()
        click.echo(f"every {interval:g}s, Ctrl-C to stop\n\n{table}")
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return


def _status(inv: dict[str, Any]) -> str:
    """The status, with the code of a failure: ``failed (409)`` rather than ``completed``, and
    what was asked of it: ``running (cancelling)``."""
    failure = (inv.get("completion") or {}).get("failure")
    if failure:
        return (
            f"{failure['message']} ({failure['code']})"
            if failure["message"] in ("cancelled", "killed")
            else f"failed ({failure['code']})"
        )
    interrupt = {"cancel": "cancelling", "pause": "pausing"}.get(inv.get("interrupt") or "")
    return f"{inv['status']} ({interrupt})" if interrupt else str(inv["status"])


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _result(completion: dict[str, Any]) -> str:
    failure = completion.get("failure")
    if failure is not None:
        return f"failure {failure['code']}: {failure['message']}"
    return _short(completion.get("value"))


def _entry_line(entry: dict[str, Any]) -> list[str]:
    """One journal entry as a timeline row: index, kind, name, what it did, when."""
    c = entry["command"]
    done = entry["completion"]
    kind = c["kind"]
    name = c.get("name") or ""
    detail = ""
    if kind in ("input", "get_state", "set_state", "state_keys", "select"):
        detail = _short(c.get("value"))
    elif kind == "output":
        detail = _result(c)
    elif kind == "sleep":
        detail = f"until {_when(c['wake_at'])}"
    elif kind in ("call", "send"):
        name = "/".join(p for p in (c["service"], c.get("key"), c["handler"]) if p is not None)
        detail = f"{_short(c.get('arg'), 30)} -> {c['invocation_id']}"
    elif kind == "awakeable":
        name = c.get("awakeable_id", name)
    elif kind in ("complete_awakeable", "complete_promise", "peek_promise") and "completion" in c:
        detail = _result(c["completion"])
    if done is not None:
        result = _result(done)
        detail = f"{detail} => {result}" if detail else f"=> {result}"
    elif kind in COMPLETABLE:
        detail = f"{detail} (waiting)".strip()
    when = _when(entry.get("created_at"))
    if entry.get("completed_at") is not None and entry["completed_at"] != entry["created_at"]:
        when += f" → {_when(entry['completed_at'])}"
    return [str(entry["index"]), kind, name, detail, when]


@invocations.command("describe")
@click.argument("invocation_id")
@admin_url_option
def invocations_describe(invocation_id: str, admin_url: str) -> None:
    """Show an invocation and its journal."""
    i = _admin("GET", admin_url, f"/invocations/{_quote(invocation_id)}")
    fields = [
        ("id", i["id"]),
        ("target", i["target"]),
        ("status", _status(i)),
        ("attempts", i["attempts"]),
        ("retries in a row", i["retry_count"]),
        ("created", _when(i["created_at"])),
        ("modified", _when(i["modified_at"])),
    ]
    if i.get("interrupt"):
        fields.append(("asked to", i["interrupt"]))
    if i["idempotency_key"]:
        fields.append(("idempotency key", i["idempotency_key"]))
    elif i["idempotency_key"] == "":
        fields.append(("runs", "once per workflow key"))
    if i["next_retry_at"] and i["status"] == "backing-off":
        fields.append(("next retry", _when(i["next_retry_at"])))
    if i["last_failure"]:
        fields.append(("last failure", i["last_failure"]))
    if i["completion"] is not None:
        fields.append(("completed", _when(i["completed_at"])))
    width = max(len(k) for k, _ in fields)
    for k, v in fields:
        click.echo(f"{k.ljust(width)}  {v}")
    click.echo("")
    rows = [_entry_line(e) for e in i["journal"]]
    click.echo(_table(rows, ["#", "entry", "name", "result", "when"]))


def _control(action: str, invocation_id: str, admin_url: str) -> dict[str, Any]:
    path = f"/invocations/{_quote(invocation_id)}/{action}"
    data: dict[str, Any] = _admin("PATCH", admin_url, path)
    return data


@invocations.command("cancel")
@click.argument("invocation_id")
@admin_url_option
def invocations_cancel(invocation_id: str, admin_url: str) -> None:
    """Cancel: the handler gets a 409 "cancelled" error at its current or next await and can
    compensate; the calls it waits on are cancelled too."""
    data = _control("cancel", invocation_id, admin_url)
    if data["status"] == "completed":
        click.echo(f"cancelled {data['id']} (it had not started)")
    else:
        click.echo(
            f"cancel requested for {data['id']}: it gets the cancellation error at the await "
            "it waits on (or its next one) and may compensate; `describe` shows how it ends"
        )


@invocations.command("kill")
@click.argument("invocation_id")
@admin_url_option
def invocations_kill(invocation_id: str, admin_url: str) -> None:
    """Kill: stop now, without compensation, and release the object key."""
    data = _control("kill", invocation_id, admin_url)
    click.echo(f"killed {data['id']}")


@invocations.command("purge")
@click.argument("invocation_id")
@admin_url_option
def invocations_purge(invocation_id: str, admin_url: str) -> None:
    """Delete a completed invocation's journal and idempotency record (a workflow's run: also
    the workflow's state and promises)."""
    data = _control("purge", invocation_id, admin_url)
    click.echo(f"purged {data['id']}")


@invocations.command("pause")
@click.argument("invocation_id")
@admin_url_option
def invocations_pause(invocation_id: str, admin_url: str) -> None:
    """Pause: stop driving it (a running attempt finishes first) until `resume`."""
    data = _control("pause", invocation_id, admin_url)
    note = " (pauses when its attempt ends)" if data["interrupt"] else ""
    click.echo(f"paused {data['id']}: now {data['status']}{note}")


@invocations.command("resume")
@click.argument("invocation_id")
@admin_url_option
def invocations_resume(invocation_id: str, admin_url: str) -> None:
    """Resume a paused invocation (after fixing what made it fail)."""
    data = _control("resume", invocation_id, admin_url)
    click.echo(f"resumed {data['id']}: now {data['status']}")


@main.group()
def state() -> None:
    """Read and edit the state of a virtual object or workflow key."""


@state.command("get")
@click.argument("service")
@click.argument("key")
@admin_url_option
def state_get(service: str, key: str, admin_url: str) -> None:
    """Print the state of SERVICE/KEY as JSON."""
    data = _admin("GET", admin_url, f"/state/{_quote(service)}/{_quote(key)}")
    click.echo(json.dumps(data["state"], indent=2, sort_keys=True))


@state.command("set")
@click.argument("service")
@click.argument("key")
@click.argument("name")
@click.argument("value")
@admin_url_option
def state_set(service: str, key: str, name: str, value: str, admin_url: str) -> None:
    """Set NAME of SERVICE/KEY to VALUE (JSON; anything else is taken as a string; `-` reads
    it from standard input, for a value too long for the command line)."""
    if value == "-":
        value = sys.stdin.read()
    try:
        decoded = json.loads(value)
    except ValueError:
        decoded = value
    path = f"/state/{_quote(service)}/{_quote(key)}"
    data = _admin("PATCH", admin_url, path, json={"set": {name: decoded}})
    click.echo(json.dumps(data["state"], indent=2, sort_keys=True))


@state.command("clear")
@click.argument("service")
@click.argument("key")
@click.argument("names", nargs=-1)
@admin_url_option
def state_clear(service: str, key: str, names: tuple[str, ...], admin_url: str) -> None:
    """Remove NAMES from SERVICE/KEY's state, or all of it when no NAMES are given."""
    path = f"/state/{_quote(service)}/{_quote(key)}"
    if names:
        data = _admin("PATCH", admin_url, path, json={"clear": list(names)})
    else:
        data = _admin("DELETE", admin_url, path)
    click.echo(json.dumps(data["state"], indent=2, sort_keys=True))


def _quote(segment: str) -> str:
    """``segment`` as one path segment: ``/`` encoded, and ``.`` and ``..`` too, which an HTTP
    client would otherwise fold away (``/state/Counter/..`` is ``/state``).

    >>> [_quote(s) for s in ("a/b", ".", "..", "a.b")]
    ['a%2Fb', '%2E', '%2E%2E', 'a.b']
    """
    quoted = urllib.parse.quote(segment, safe="")
    return quoted.replace(".", "%2E") if set(segment) == {"."} else quoted


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
