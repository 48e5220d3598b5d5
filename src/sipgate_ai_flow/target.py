"""Loading the assistant a command names: ``package.module:attr`` or ``path/to/file.py:attr``.

Below both the CLI (``aiflow serve``, ``aiflow call``) and the test kit (``--aiflow-target``), so
neither imports the other; the serving workers load it without the test kit.
"""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
import traceback
import types
from pathlib import Path

from sipgate_ai_flow.assistant.assistant import Assistant
from sipgate_ai_flow.errors import TargetError, kind_of

__all__ = ["load_target"]


def load_target(spec: str) -> Assistant:
    """Import ``spec`` and return the :class:`Assistant` it names (``attr`` defaults to ``assistant``)."""
    location, _, attr = spec.rpartition(":") if ":" in spec else (spec, ":", "assistant")
    if not location or not attr:
        raise TargetError(f"{spec!r} is not a target; use 'package.module:attr' or 'path/to/file.py:attr'")
    module = _import_file(location) if location.endswith(".py") or "/" in location else _import(location)
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"{location} has no attribute {attr!r}") from None
    if not isinstance(obj, Assistant):
        raise TargetError(f"{spec} is {kind_of(obj)}, not a sipgate_ai_flow.Assistant")
    return obj


def _import(name: str) -> object:
    # Like `python -m`, let modules in the working directory be found.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise TargetError(f"no module named {name!r} (run from the folder that holds it?)") from None
        raise TargetError(_user_error(name, exc)) from None
    except Exception as exc:
        raise TargetError(_user_error(name, exc)) from None


def _import_file(location: str) -> object:
    path = Path(location).resolve()
    if not path.is_file():
        raise TargetError(f"no such file: {location}")
    name = f"aiflow_target_{path.stem}"
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    module = types.ModuleType(name)
    module.__file__ = str(path)
    # The file's folder goes on sys.path so it can import its neighbours, as `python file.py` would.
    sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        # Compiled from source, like `python file.py`: no __pycache__, whose mtime-based check can
        # hand --reload the old code when an edit keeps the file's size within the same second.
        exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)
    except BaseException as exc:
        del sys.modules[name]
        if isinstance(exc, Exception):
            raise TargetError(_user_error(location, exc)) from None
        raise
    return module


_OURS = str(Path(__file__).resolve().parent)
# Frames in the standard library and installed packages are not the user's to fix.
_LIBRARIES = tuple({sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")})


def _user_error(target: str, exc: Exception) -> str:
    """Say what failed in the user's code, where, in a few lines: no frames of ours or importlib's."""
    summary = traceback.TracebackException.from_exception(exc)
    lines = [f"{target} failed to load:"]
    frames = [
        frame for frame in summary.stack if not frame.filename.startswith((_OURS, *_LIBRARIES, "<"))
    ] or summary.stack[-1:]
    for frame in frames[-3:]:
        lines.append(f"  {_shown(frame.filename)}:{frame.lineno}, in {frame.name}")
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    if isinstance(exc, SyntaxError):
        lines.append(f"  {_shown(exc.filename or '?')}:{exc.lineno}: {type(exc).__name__}: {exc.msg}")
        if exc.text:
            lines.append(f"    {exc.text.strip()}")
    else:
        lines.append(f"  {type(exc).__name__}: {exc}")
    return "\n".join(lines)


def _shown(filename: str) -> str:
    try:
        return os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        return filename
