"""What a detector factory's code is, as a hash: the descriptor cache key of a plugin, and how the registry tells
a re-run of the same registration (a notebook cell run twice) from a different detector under the same name.

A plugin imported from a file is its file's sha256. A factory defined in ``__main__`` (a notebook, ``python -c``)
has no file worth hashing, so its *definition* is hashed: its bytecode, constants, defaults and closure values,
and, recursively, every function and class of ``__main__`` it uses (the model class in another cell included).
Changing any of them changes the hash, so a changed model never reuses stale cached descriptors.
Standard library only: the registry imports it without torch.
"""

from __future__ import annotations

import hashlib
import inspect
import types
from pathlib import Path

_SIMPLE = (int, float, complex, str, bytes, bool, type(None))


def code_digest(factory) -> str | None:
    """None for copybench's own detectors; the file's sha256 for a plugin module; the definition hash for a
    factory defined in ``__main__`` or in a module without a file."""
    module = inspect.getmodule(factory)
    name = getattr(module, "__name__", None) or getattr(factory, "__module__", "")
    if name.split(".")[0] == "copybench":
        return None
    path = getattr(module, "__file__", None)
    if name != "__main__" and path and Path(path).is_file():
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return definition_digest(factory)


def factory_digest(factory) -> str:
    """sha256 of a factory's own code, defaults and closure values, not of what it calls: the registry's
    "same definition" test (re-running a registration cell after editing the model class is not a conflict;
    the cache key, :func:`code_digest`, still changes with the model)."""
    func = getattr(factory, "__func__", factory)
    if not inspect.isfunction(func):
        return hashlib.sha256(repr(factory).encode()).hexdigest()
    parts = [_code(func.__code__), repr(func.__defaults__).encode(), repr(func.__kwdefaults__).encode()]
    parts += [_value(c.cell_contents, None, set()) for c in func.__closure__ or () if _filled(c)]
    return hashlib.sha256(b"\1".join(parts)).hexdigest()


def definition_digest(obj) -> str:
    """sha256 of a function's or class's definition and of the definitions it uses from its own module."""
    module = getattr(obj, "__module__", None)
    return hashlib.sha256(_definition(obj, module, set())).hexdigest()


def _code(code: types.CodeType) -> bytes:
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    parts += [_code(c) if isinstance(c, types.CodeType) else repr(c).encode() for c in code.co_consts]
    return b"\0".join(parts)


def _names(code: types.CodeType) -> list[str]:
    nested = [n for c in code.co_consts if isinstance(c, types.CodeType) for n in _names(c)]
    return [*code.co_names, *nested]


def _definition(obj, module: str | None, seen: set[int]) -> bytes:
    if id(obj) in seen:
        return b"<seen>"
    seen.add(id(obj))
    func = getattr(obj, "__func__", obj)
    if inspect.isfunction(func):
        parts = [_code(func.__code__), repr(func.__defaults__).encode(), repr(func.__kwdefaults__).encode()]
        parts += [_value(c.cell_contents, module, seen) for c in func.__closure__ or () if _filled(c)]
        parts += [
            _value(func.__globals__[n], module, seen) for n in _names(func.__code__) if n in func.__globals__
        ]
        return b"\1".join(parts)
    if inspect.isclass(obj):
        parts = [obj.__qualname__.encode()] + [_value(b, module, seen) for b in obj.__bases__]
        parts += [k.encode() + b"=" + _value(v, module, seen) for k, v in sorted(vars(obj).items())]
        return b"\2".join(parts)
    return _value(obj, module, seen)


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _value(value, module: str | None, seen: set[int]) -> bytes:
    """A referenced value: definitions of the same module recursively, simple constants by value, the rest
    (modules, library classes) by name only: their code is versioned elsewhere."""
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    if (inspect.isfunction(value) or inspect.isclass(value)) and getattr(value, "__module__", None) == module:
        return _definition(value, module, seen)
    if isinstance(value, _SIMPLE):
        return repr(value).encode()
    if isinstance(value, tuple | list | frozenset):
        return b"(" + b",".join(_value(v, module, seen) for v in value) + b")"
    if isinstance(value, property):
        return b"property:" + b",".join(_value(f, module, seen) for f in (value.fget, value.fset) if f)
    name = (
        getattr(value, "__qualname__", None) or getattr(value, "__name__", None) or type(value).__qualname__
    )
    return f"<{getattr(value, '__module__', '')}.{name}>".encode()
