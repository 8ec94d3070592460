"""Dataclass trees as configurations: field metadata, typed coercion, building from nested mappings.

Generic machinery behind :mod:`raco.config` (which holds raco's own dataclasses): a config is a tree of
dataclasses whose leaf fields carry ``metadata`` with help text, allowed ``choices`` and a ``check``;
lists of dataclasses are addressed by their items' ``name``. Written here rather than taken from a
library because transformers' ``HfArgumentParser`` has no nested dataclasses or named list items.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable
from dataclasses import field
from typing import Any, TypeGuard

# A field's ``check(value)``: an error message, or None when the value is fine.
Check = Callable[[Any], str | None]


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key."""


def opt(
    default: Any = dataclasses.MISSING,
    help: str = "",
    choices: tuple = (),
    check: Check | None = None,
    **kw: Any,
) -> Any:
    """A config field with its help text, allowed ``choices`` and a ``check(value) -> error|None``."""
    return field(default=default, metadata=meta(help, choices, check), **kw)


def meta(help: str, choices: tuple = (), check: Check | None = None) -> dict:
    """Field metadata: help text, allowed values, and a ``check(value) -> error|None``."""
    return {"help": help, "choices": choices, "check": check}


# ----------------------------------------------------------------------------- introspection


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> TypeGuard[type]:
    """Whether a type hint is a dataclass (a nested config section)."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field, Any]]:
    """All settable ``(dotted_key, field, type)`` below ``cls`` (objectives as ``objectives.NAME.*``)."""
    out = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if _is_dataclass_type(tp):
            out += leaf_fields(tp, key + ".")
        elif typing.get_origin(tp) is list and _is_dataclass_type(typing.get_args(tp)[0]):
            out += leaf_fields(typing.get_args(tp)[0], key + ".NAME.")
        else:
            out.append((key, f, tp))
    return out


def suggest(word: str, candidates: list[str]) -> str:
    """The hint "; did you mean `x`?" for the closest candidate (dotted keys also by their last part)."""
    tails = [c.rsplit(".", 1)[-1] for c in candidates]
    last = {t: c for t, c in zip(tails, candidates, strict=True) if tails.count(t) == 1}
    tail = word.rsplit(".", 1)[-1]
    match = [last[tail]] if tail in last else []  # `--lr` -> `train.lr`
    match = match or difflib.get_close_matches(word, candidates, n=1, cutoff=0.5)
    if not match:
        hit = difflib.get_close_matches(tail, list(last), n=1, cutoff=0.75)
        match = [last[hit[0]]] if hit else []
    return f"; did you mean `{match[0]}`?" if match else ""


# ----------------------------------------------------------------------------- coercion


def parse_bool(value: Any) -> bool:
    """A bool, or true/false, yes/no, 1/0, on/off in any case (YAML or a command line); ValueError else."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ValueError("must be true or false")


def _coerce_scalar(value: Any, tp: Any, key: str) -> Any:
    if tp is bool:
        try:
            return parse_bool(value)
        except ValueError:
            raise ConfigError(f"{key}: expected true/false, got {value!r}") from None
    if tp is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            return int(value) if not isinstance(value, str) else int(value.strip())
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if tp is float:
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not math.isfinite(out):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return out
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return str(value)


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML or command-line ``value`` to type ``tp`` or raise a ConfigError naming ``key``."""
    tp, optional = _unwrap_optional(tp)
    if tp is Any:
        return value
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{key}: a value is required")
    if typing.get_origin(tp) is dict:
        if isinstance(value, str):  # command line: key=value,key=value
            pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ConfigError(f"{key}: expected key=value[,key=value...], got {value!r}")
            value = {k.strip(): v.strip() for k, v in pairs}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): coerce(v, typing.get_args(tp)[1], f"{key}.{k}") for k, v in value.items()}
    if typing.get_origin(tp) is list:
        item = typing.get_args(tp)[0]
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    return _coerce_scalar(value, tp, key)


def _check_field(f: dataclasses.Field, value: Any, key: str) -> None:
    choices = f.metadata.get("choices") or ()
    if choices and value not in choices:
        hint = suggest(str(value), list(choices))
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}{hint}")
    check = f.metadata.get("check")
    problem = check(value) if check and value is not None else None
    if problem:
        raise ConfigError(f"{key}: {value!r} {problem}")


def build(cls: type, data: Any, prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a nested mapping; unknown keys and bad values are errors."""
    where = prefix.rstrip(".") or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            valid = [k for k, _, _ in leaf_fields(cls, prefix)] + [prefix + n for n in names]
            raise ConfigError(f"unknown key `{prefix}{key}`{suggest(prefix + str(key), valid)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        key, tp = prefix + f.name, hints[f.name]
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: a value is required")
            continue
        kwargs[f.name] = _build_value(f, tp, data[f.name], key)
    return cls(**kwargs)


def _build_value(f: dataclasses.Field, tp: Any, value: Any, key: str) -> Any:
    if _is_dataclass_type(tp):
        return build(tp, value, key + ".")
    if typing.get_origin(tp) is list and _is_dataclass_type(typing.get_args(tp)[0]):
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of mappings, got {value!r}")
        item = typing.get_args(tp)[0]
        return [build(item, v, f"{key}.{_item_name(v, i)}.") for i, v in enumerate(value)]
    out = coerce(value, tp, key)
    _check_field(f, out, key)
    return out


def _item_name(item: Any, index: int) -> str:
    return str(item.get("name", index)) if isinstance(item, dict) else str(index)


def generic_key(cls: type, key: str) -> str:
    """``key`` with the item names of lists of dataclasses replaced by ``NAME``, as :func:`leaf_fields`
    lists it (``objectives.helpful.weight`` -> ``objectives.NAME.weight``)."""
    parts, out = key.split("."), []
    tp: Any = cls
    position = 0
    while position < len(parts):
        part = parts[position]
        out.append(part)
        hints = _hints(tp) if _is_dataclass_type(tp) else {}
        field_type = _unwrap_optional(hints[part])[0] if part in hints else None
        if typing.get_origin(field_type) is list and _is_dataclass_type(typing.get_args(field_type)[0]):
            if position + 1 < len(parts):
                out.append("NAME")
                position += 1
            tp = typing.get_args(field_type)[0]
        else:
            tp = field_type
        position += 1
    return ".".join(out)


def set_dotted(tree: dict, cls: type, key: str, value: Any, flag: str = "--") -> None:
    """Set dotted ``key`` of config class ``cls`` in the nested mapping ``tree``; in a list of
    dataclasses the part after the list's name is an item's ``name``, found or created
    (``objectives.helpful.weight``). An unknown key is a ``ConfigError`` with a suggestion."""
    valid = [k for k, _, _ in leaf_fields(cls)]
    generic = generic_key(cls, key)
    if generic not in valid:
        raise ConfigError(f"unknown option `{flag}{key}`{suggest(generic, valid)}")
    parts, shape = key.split("."), generic.split(".")
    node: Any = tree
    for position, part in enumerate(parts[:-1]):
        if shape[position] == "NAME":
            items = node
            node = next((o for o in items if isinstance(o, dict) and o.get("name") == part), None)
            if node is None:
                node = {"name": part}
                items.append(node)
            continue
        is_list = position + 1 < len(shape) and shape[position + 1] == "NAME"
        node = node.setdefault(part, [] if is_list else {})
        if not isinstance(node, list if is_list else dict):
            kind = "a list of mappings" if is_list else "a mapping"
            raise ConfigError(f"{'.'.join(parts[: position + 1])}: expected {kind}, got {node!r}")
    node[parts[-1]] = value
