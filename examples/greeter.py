"""Greeter: a stateless service.

tarry dev examples/greeter.py
curl localhost:8080/Greeter/greet --json '"World"'
curl localhost:8080/Greeter/greet_later --json '{"name": "World", "seconds": 6}'
"""

from datetime import timedelta
from typing import TypedDict

import tarry

greeter = tarry.Service("Greeter")


@greeter.handler()
async def greet(ctx: tarry.Context, name: str) -> str:
    return f"Hello {name}!"


class Later(TypedDict):
    name: str
    seconds: float


@greeter.handler()
async def greet_later(ctx: tarry.Context, req: Later) -> str:
    ctx.logger.info("about to sleep")
    await ctx.sleep(timedelta(seconds=req["seconds"]))  # durable: survives restarts
    return f"Hello {req['name']}!"


app = tarry.app([greeter])
