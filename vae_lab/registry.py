"""vae_lab's own classes by exact name (never imported by name), their settings checked by signature."""

import collections.abc
import importlib
import inspect
import pkgutil
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

from vae_lab.errors import ConfigError

PLAIN = (bool, int, float, str, type(None))
HYDRA_KEYS = ("_target_", "_recursive_", "_convert_", "_partial_", "_args_")


class Registry:
    """The classes a test accepts among those defined in the modules of `package` (walked on first use)."""

    def __init__(self, package: str, kind: str, accepts: Callable[[type], bool]) -> None:
        self.package, self.kind, self.accepts = package, kind, accepts
        self._classes: dict[str, type] | None = None

    @property
    def classes(self) -> dict[str, type]:
        """Qualified name (`vae_lab.nets.mlp.MLPNet`) → class, for every accepted class the package defines."""
        if self._classes is None:
            self._classes = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in self._walk() if self.accepts(cls)}
        return self._classes

    def _walk(self) -> Iterator[type]:
        """Every class defined (not merely imported) in a module of the package, its sub-packages included."""
        root = importlib.import_module(self.package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{self.package}."):
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, type) and value.__module__ == module.__name__:
                    yield value

    def get(self, name: object, where: str) -> type:
        """The class of exactly this name, or a one-line error listing the names there are."""
        cls = self.classes.get(name) if isinstance(name, str) else None
        if cls is None:
            known = ", ".join(sorted(n.removeprefix(f"{self.package}.") for n in self.classes))
            raise ConfigError(f"{where}={name!r}: not one of vae_lab's {self.kind} ({known})")
        return cls

    def build(self, settings: dict[str, Any], where: str, **given: Any) -> Any:
        """Check `settings` (a config node with its `_target_`) against the class's signature, then call it."""
        settings = dict(settings)
        cls = self.get(settings.pop("_target_", None), f"{where}._target_")
        for key in HYDRA_KEYS:
            settings.pop(key, None)
        check_settings(cls, settings, where, given=tuple(given))
        return cls(**settings, **given)


def parameters(cls: type) -> tuple[dict[str, tuple[inspect.Parameter, Any]], bool]:
    """A constructor's parameters and annotations following `**kwargs` up the chain, and whether it stays open."""
    found: dict[str, tuple[inspect.Parameter, Any]] = {}
    for klass in cls.__mro__[:-1]:  # not object's
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 (an annotation a library cannot resolve at run time: unchecked, not refused)
            hints = {}
        params = list(inspect.signature(init).parameters.values())[1:]
        for param in params:
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                found.setdefault(param.name, (param, hints.get(param.name, Any)))
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return found, False
    return found, True


def check_settings(cls: type, settings: dict[str, Any], where: str, given: tuple[str, ...] = ()) -> None:
    """One line for a key the class does not take, a value of the wrong type, or a required setting left out."""
    params, open_ended = parameters(cls)
    for key, value in settings.items():
        if key in given:
            raise ConfigError(f"{where}.{key}: set by vae_lab, not by the config; remove it")
        if key not in params:
            if open_ended:
                continue
            takes = ", ".join(sorted(k for k in params if k not in given))
            raise ConfigError(f"{where}.{key}: {cls.__name__} has no such setting (it takes: {takes})")
        if not fits(value, params[key][1]):
            raise ConfigError(f"{where}.{key}={value!r}: must be {describe(params[key][1])}")
    missing = [k for k, (p, _) in params.items()
               if p.default is p.empty and _declared_by(cls, k) and k not in settings and k not in given]
    if missing:
        raise ConfigError(f"{where}: {cls.__name__} needs {', '.join(missing)}")


def literals(hint: Any) -> list[Any]:
    """The values of every `Literal` inside an annotation (nested unions flattened)."""
    if typing.get_origin(hint) is typing.Literal:
        return list(typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [v for arg in typing.get_args(hint) for v in literals(arg)]
    return []


def _declared_by(cls: type, name: str) -> bool:
    """Whether the nearest constructor in the class chain names this parameter (later ones get it from that one)."""
    init = next(klass.__dict__["__init__"] for klass in cls.__mro__ if "__init__" in klass.__dict__)
    return name in inspect.signature(init).parameters


def fits(value: Any, hint: Any) -> bool:
    """Whether a plain config value fits an annotation (any plain value fits a non-plain class)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return plain(value)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if hint in (int, float):  # a whole number is a number; a bool is neither
        return isinstance(value, (int, hint)) and not isinstance(value, bool)
    if hint in PLAIN:
        return isinstance(value, hint)
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(fits(v, items[0] if items else Any) for v in value)
    if origin in (dict, collections.abc.Mapping) or hint is dict:
        return isinstance(value, dict) and plain(value)
    return plain(value)


def plain(value: Any) -> bool:
    """Numbers, strings, booleans, None, and lists and dicts of them: what a config or a checkpoint may hold."""
    if isinstance(value, PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(plain(v) for v in value)
    return isinstance(value, dict) and all(isinstance(k, str) and plain(v) for k, v in value.items())


def describe(hint: Any) -> str:
    """An annotation in words: `int | None` → 'a whole number or null'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) or origin is typing.Literal:
        choices = literals(hint)
        rest = [describe(a) for a in args if typing.get_origin(a) is not typing.Literal] if origin is not typing.Literal \
            else []
        parts = ([f"one of {', '.join(repr(c) for c in choices)}"] if choices else []) + rest
        return " or ".join(dict.fromkeys(parts))
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        return f"a list (each {describe(items[0])})" if items else "a list"
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
             type(None): "null", dict: "a mapping"}
    return words.get(hint, "a plain value")
