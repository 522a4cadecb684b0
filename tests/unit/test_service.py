"""Handler registration rules and what discovery publishes."""

import dataclasses
from typing import Any

import pytest

import tarry
from tarry import Context, ObjectContext, ObjectSharedContext, WorkflowContext
from tarry.protocol import PROTOCOL_VERSION
from tarry.service import handler_def


@dataclasses.dataclass
class Signup:
    email: str


def test_a_sync_function_is_not_a_handler() -> None:
    svc = tarry.Service("S")
    with pytest.raises(TypeError, match="async"):

        @svc.handler()
        def sync(ctx: Context) -> None:
            return None

    assert svc.handlers == {}


@pytest.mark.parametrize("arity", [0, 3])
def test_a_handler_takes_ctx_and_at_most_one_input(arity: int) -> None:
    svc = tarry.Service("S")

    async def none() -> None:
        return None

    async def three(ctx: Context, a: int, b: int) -> None:
        return None

    with pytest.raises(TypeError, match=r"\(ctx\) or \(ctx, input\)"):
        svc.handler()(none if arity == 0 else three)
    assert svc.handlers == {}


def test_handler_names_are_unique_per_service() -> None:
    svc = tarry.Service("S")

    @svc.handler()
    async def greet(ctx: Context) -> None:
        return None

    async def other(ctx: Context) -> None:
        return None

    with pytest.raises(ValueError, match="greet"):
        svc.handler(name="greet")(other)
    svc.handler(name="greet2")(other)
    assert list(svc.handlers) == ["greet", "greet2"]


@pytest.mark.parametrize("name", ["", "a/b"])
def test_a_service_name_is_a_path_segment(name: str) -> None:
    with pytest.raises(ValueError, match="invalid service name"):
        tarry.Service(name)


def test_virtual_object_handler_kinds() -> None:
    obj = tarry.VirtualObject("Counter")

    @obj.handler()
    async def add(ctx: ObjectContext, n: int) -> int:
        return n

    @obj.handler(kind="shared")
    async def get(ctx: ObjectSharedContext) -> int:
        return 0

    assert obj.handlers["add"].kind == "exclusive"
    assert obj.handlers["get"].kind == "shared"
    with pytest.raises(ValueError, match="exclusive"):
        obj.handler(kind="workflow")  # type: ignore[arg-type]


def test_a_service_handler_is_shared() -> None:
    svc = tarry.Service("S")

    @svc.handler()
    async def h(ctx: Context) -> None:
        return None

    assert handler_def(h).kind == "shared"
    assert handler_def(h).service_kind == "service"


def test_workflow_has_exactly_one_run_handler() -> None:
    wf = tarry.Workflow("Signup")

    @wf.handler()
    async def run(ctx: WorkflowContext, req: Signup) -> str:
        return req.email

    @wf.handler()
    async def click(ctx: tarry.WorkflowSharedContext, secret: str) -> None:
        return None

    assert wf.handlers["run"].kind == "workflow"
    assert wf.handlers["click"].kind == "shared"

    async def another(ctx: WorkflowContext) -> None:
        return None

    with pytest.raises(ValueError, match="already has a run handler"):
        wf.main(name="main")(another)

    other = tarry.Workflow("Other")
    other.main()(another)
    assert other.handlers["run"].kind == "workflow"


def test_handler_def_of_a_plain_function_is_refused() -> None:
    async def plain(ctx: Context) -> None:
        return None

    with pytest.raises(TypeError, match="not a tarry handler"):
        handler_def(plain)


def test_discovery_describes_inputs_and_outputs() -> None:
    svc = tarry.Service("Greeter")

    @svc.handler()
    async def greet(ctx: Context, name: str) -> str:
        return name

    @svc.handler()
    async def ping(ctx: Context) -> None:
        return None

    @svc.handler()
    async def signup(ctx: Context, req: Signup) -> dict[str, int]:
        return {}

    @svc.handler()
    async def anything(ctx, value):  # type: ignore[no-untyped-def]
        return value

    obj = tarry.VirtualObject("Counter")

    @obj.handler()
    async def add(ctx: ObjectContext, n: int) -> int:
        return n

    discovery = tarry.Endpoint([svc, obj]).discovery()
    assert discovery["protocol"] == PROTOCOL_VERSION
    greeter, counter = discovery["services"]
    assert (greeter["name"], greeter["kind"]) == ("Greeter", "service")
    assert (counter["name"], counter["kind"]) == ("Counter", "object")
    handlers: dict[str, Any] = {h["name"]: h for h in greeter["handlers"]}
    assert handlers["greet"] == {
        "name": "greet",
        "kind": "shared",
        "input_schema": {"type": "string"},
        "output_schema": {"type": "string"},
        "void_output": False,
    }
    assert handlers["ping"]["input_schema"] is None
    assert handlers["ping"]["void_output"] is True
    assert handlers["ping"]["output_schema"] is None
    assert handlers["signup"]["input_schema"]["required"] == ["email"]
    assert handlers["signup"]["output_schema"] == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }
    assert handlers["anything"]["input_schema"] == {}
    assert handlers["anything"]["void_output"] is False
    assert counter["handlers"][0]["kind"] == "exclusive"


def test_an_endpoint_refuses_two_services_of_one_name() -> None:
    with pytest.raises(ValueError, match="'S'"):
        tarry.Endpoint([tarry.Service("S"), tarry.VirtualObject("S")])
