"""Finding the services an APP argument names: a file path or a module, optionally ``:attr``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tarry.service import Service, ServiceDefinition, VirtualObject, Workflow, services_in


class AppError(Exception):
    """The APP argument names nothing that serves handlers."""


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
        loaded.loader.exec_module(module)
        return module
    sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        raise AppError(f"cannot import {spec!r}: {exc}") from exc


def load_services(app: str) -> list[ServiceDefinition]:
    """Every Service, VirtualObject and Workflow that ``app`` defines (or its ``:attr``)."""
    spec, _, attr = app.partition(":")
    if ":" in app and len(spec) == 1:  # a Windows drive letter, not module:attr
        spec, attr = app, ""
    module = _import(spec)
    kinds = (Service, VirtualObject, Workflow)
    if attr:
        if not hasattr(module, attr):
            raise AppError(f"{spec} has no attribute {attr!r}")
        found = getattr(module, attr)
        items = found if isinstance(found, list | tuple) else [found]
        services = [s for s in items if isinstance(s, kinds)]
        if len(services) != len(items):
            raise AppError(f"{app} is not a service or a list of services")
    else:
        services = services_in(module)
    if not services:
        raise AppError(f"{app} defines no Service, VirtualObject or Workflow")
    return services


__all__ = ["AppError", "load_services"]
