"""Finding the services an APP argument names: a file path or a module, optionally ``:attr``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from tarry.asgi import App
from tarry.service import Service, ServiceDefinition, VirtualObject, Workflow, services_in


class AppError(Exception):
    """The APP argument names nothing that serves handlers, or loading it failed (the error is
    the message, in one line; its cause keeps the traceback)."""


def _where(exc: BaseException) -> str:
    """The innermost line of the user's code an exception came from: ``app.py:12``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    return f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""


def _exec(spec: str, run: Callable[[], ModuleType]) -> ModuleType:
    """Run the import of APP, turning what its code raises into one line naming the fix."""
    try:
        return run()
    except SyntaxError as exc:
        where = f"{exc.filename or spec}, line {exc.lineno}"
        raise AppError(f"{where}: {exc.msg}: fix the syntax error") from exc
    except ImportError as exc:
        named = exc.name is not None and (spec == exc.name or spec.startswith(f"{exc.name}."))
        if isinstance(exc, ModuleNotFoundError) and named:
            raise AppError(f"no file or module named {spec!r}") from exc
        missing = f" (pip install the package that provides {exc.name!r}?)" if exc.name else ""
        raise AppError(f"loading {spec} failed{_where(exc)}: {exc}{missing}") from exc
    except Exception as exc:
        raise AppError(
            f"loading {spec} failed{_where(exc)}: {type(exc).__name__}: {exc} "
            "(-v shows the traceback)"
        ) from exc


def _import(spec: str) -> ModuleType:
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise AppError(f"no such file: {spec}")
        sys.path.insert(0, str(path.resolve().parent))
        module_name = path.stem
        loaded = importlib.util.spec_from_file_location(module_name, path.resolve())
        if loaded is None or loaded.loader is None:
            raise AppError(f"cannot load {spec} as Python")
        module = importlib.util.module_from_spec(loaded)
        sys.modules[module_name] = module
        loader = loaded.loader

        def run() -> ModuleType:
            loader.exec_module(module)
            return module

        return _exec(spec, run)
    sys.path.insert(0, str(Path.cwd()))
    return _exec(spec, lambda: importlib.import_module(spec))


def _apps_in(module: ModuleType) -> dict[str, App]:
    return {name: v for name, v in vars(module).items() if isinstance(v, App)}


def load_services(app: str) -> list[ServiceDefinition]:
    """The services ``app`` serves: those of its ``:attr`` (a service, a list of them, or a
    ``tarry.app(...)``); else those of the ``tarry.app(...)`` the module defines, exactly as
    uvicorn would serve them; else every Service, VirtualObject and Workflow it defines."""
    spec, _, attr = app.partition(":")
    if ":" in app and len(spec) == 1:  # a Windows drive letter, not module:attr
        spec, attr = app, ""
    module = _import(spec)
    kinds = (Service, VirtualObject, Workflow)
    if attr:
        if not hasattr(module, attr):
            raise AppError(f"{spec} has no attribute {attr!r}")
        found = getattr(module, attr)
        if isinstance(found, App):
            return list(found.endpoint.services.values())
        items = found if isinstance(found, list | tuple) else [found]
        services = [s for s in items if isinstance(s, kinds)]
        if len(services) != len(items):
            raise AppError(f"{app} is not a service or a list of services")
    elif apps := _apps_in(module):
        if len(apps) > 1:
            raise AppError(
                f"{spec} makes {len(apps)} tarry apps ({', '.join(apps)}): name the one to serve "
                f"as {spec}:NAME"
            )
        (served,) = apps.values()
        services = list(served.endpoint.services.values())
    else:
        services = services_in(module)
    if not services:
        raise AppError(f"{app} defines no Service, VirtualObject or Workflow")
    return services


__all__ = ["AppError", "load_services"]
