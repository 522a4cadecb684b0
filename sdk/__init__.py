"""tarry: durable execution for Python, in the style of Restate.

>>> import tarry
>>> greeter = tarry.Service("Greeter")
>>> @greeter.handler()
... async def greet(ctx: tarry.Context, name: str) -> str:
...     return f"Hello {name}!"
>>> app = tarry.app([greeter])
"""

from .asgi import app
from .clock import Clock, ManualClock, SystemClock
from .context import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    Request,
    WorkflowContext,
    WorkflowSharedContext,
)
from .endpoint import Endpoint
from .errors import StepInterrupted, TerminalError
from .operations.base import DurableFuture
from .operations.call import SendHandle
from .operations.combinators import gather, select
from .operations.promise import DurablePromise
from .retry import RetryPolicy
from .service import Service, VirtualObject, Workflow

__all__ = [
    "Clock",
    "Context",
    "DurableFuture",
    "DurablePromise",
    "Endpoint",
    "ManualClock",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RetryPolicy",
    "SendHandle",
    "Service",
    "StepInterrupted",
    "SystemClock",
    "TerminalError",
    "VirtualObject",
    "Workflow",
    "WorkflowContext",
    "WorkflowSharedContext",
    "app",
    "gather",
    "select",
]
