"""``tarry lambda package``: a Lambda function's deployment package (a zip) for an app.

The zip holds the app's module, tarry's SDK and Lambda adapter (not the runtime: a function
never imports it), and an entry module whose ``handler`` serves every service the app defines:
the function's handler setting is ``tarry_lambda.handler``. boto3, which the adapter uses to
reach DynamoDB, is in Lambda's Python runtime; anything else the app imports goes in with
``include`` (a folder of packages, such as one made by ``pip install --target``).

>>> package(Path("examples/greeter.py"), Path("build/greeter.zip"))  # doctest: +SKIP
Packaged(path=PosixPath('build/greeter.zip'), handler='tarry_lambda.handler', ...)
"""

from __future__ import annotations

import importlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .loader import AppError

ENTRY = "tarry_lambda"
HANDLER = f"{ENTRY}.handler"
# The SDK's packages a function needs; tarry.runtime and tarry.infra stay out.
_PACKAGES = ("tarry", "tarry.operations", "tarry.lambda_adapter")

_ENTRY_SOURCE = '''"""The Lambda entry of {module!r}: {handler} (made by `tarry lambda package`)."""

import {module} as _app
from tarry.lambda_adapter import lambda_handler
from tarry.service import services_in

# The app's own handler if it has one (a lambda_handler with its own margin, say), else one
# that serves every service it defines.
handler = getattr(_app, "handler", None) or lambda_handler(services_in(_app))
'''


@dataclass(frozen=True)
class Packaged:
    path: Path
    handler: str
    size: int
    files: int


def package(app: Path, output: Path, include: list[Path] | None = None) -> Packaged:
    """Write the zip for the app module ``app`` (a ``.py`` file) to ``output``."""
    if app.suffix != ".py" or not app.is_file():
        raise AppError(f"{app}: give the app as a .py file")
    module = app.stem
    if not module.isidentifier() or module == ENTRY:
        raise AppError(f"{app}: the file name must be a Python module name other than {ENTRY}")
    output.parent.mkdir(parents=True, exist_ok=True)
    files = 0
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in _PACKAGES:
            folder = Path(importlib.import_module(name).__file__ or "").parent
            for source in sorted(folder.iterdir()):
                if source.suffix == ".py" or source.name == "py.typed":
                    archive.write(source.resolve(), "/".join([*name.split("."), source.name]))
                    files += 1
        archive.write(app, app.name)
        archive.writestr(f"{ENTRY}.py", _ENTRY_SOURCE.format(module=module, handler=HANDLER))
        files += 2
        for extra in include or []:
            if extra.is_dir():
                for path in sorted(p for p in extra.rglob("*") if p.is_file()):
                    if "__pycache__" not in path.parts:
                        archive.write(path, path.relative_to(extra).as_posix())
                        files += 1
            elif extra.is_file():
                archive.write(extra, extra.name)
                files += 1
            else:
                raise AppError(f"{extra}: no such file or folder to include")
    return Packaged(output, HANDLER, output.stat().st_size, files)


__all__ = ["ENTRY", "HANDLER", "Packaged", "package"]
