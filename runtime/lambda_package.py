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
import shutil
import subprocess
import sys
import tempfile
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
    compiled: bool  # holds bytecode for Python 3.12


def package(
    app: Path,
    output: Path,
    include: list[Path] | None = None,
    python: str | None = None,
) -> Packaged:
    """Write the zip for the app module ``app`` (a ``.py`` file) to ``output``. ``python``: an
    interpreter of the function's Python (3.12) to compile the package with, so a cold start
    does not compile it (Lambda's code folder is read-only, so nothing compiled there is kept);
    by default ``python3.12`` if one runs, else the zip holds sources only."""
    if app.suffix != ".py" or not app.is_file():
        raise AppError(f"{app}: give the app as a .py file")
    module = app.stem
    if not module.isidentifier() or module == ENTRY:
        raise AppError(f"{app}: the file name must be a Python module name other than {ENTRY}")
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        for name in _PACKAGES:
            folder = Path(importlib.import_module(name).__file__ or "").parent
            target = stage.joinpath(*name.split("."))
            target.mkdir(parents=True, exist_ok=True)
            for source in sorted(folder.iterdir()):
                if source.suffix == ".py" or source.name == "py.typed":
                    shutil.copyfile(source, target / source.name)
        shutil.copyfile(app, stage / app.name)
        (stage / f"{ENTRY}.py").write_text(_ENTRY_SOURCE.format(module=module, handler=HANDLER))
        for extra in include or []:
            if extra.is_dir():
                shutil.copytree(extra, stage, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
            elif extra.is_file():
                shutil.copyfile(extra, stage / extra.name)
            else:
                raise AppError(f"{extra}: no such file or folder to include")
        compiler = python or _python312()
        if compiler is not None:
            # unchecked-hash: a zip keeps times to 2 s, which would make timestamped pycs stale
            subprocess.run(
                [compiler, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                 "-s", str(stage), "-p", "/var/task", str(stage)],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
        output.parent.mkdir(parents=True, exist_ok=True)
        files = 0
        with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in stage.rglob("*") if p.is_file()):
                archive.write(path, path.relative_to(stage).as_posix())
                files += 1
    return Packaged(output, HANDLER, output.stat().st_size, files, compiled=compiler is not None)


def _python312() -> str | None:
    """A Python 3.12 interpreter that runs (a pyenv shim may exist for one that does not)."""
    candidates = [sys.executable if sys.version_info[:2] == (3, 12) else None,
                  shutil.which("python3.12")]  # fmt: skip
    for candidate in filter(None, candidates):
        try:
            ran = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        if ran.returncode == 0 and ran.stdout.strip() == "(3, 12)":
            return candidate
    return None


__all__ = ["ENTRY", "HANDLER", "Packaged", "package"]
