"""Converting a config value to its field's type and checking it against the field's rules.

Every message names the key (``config key 'train.steps' = 0 is out of range``), or the label a
caller gives it (the CLI names its flags as typed).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError


def field_types(obj: Any) -> dict[str, Any]:
    """The types of the fields of the config section ``obj``, by name."""
    return typing.get_type_hints(type(obj))


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters with "...": a message quotes a value, and a
    long list under a string key must not fill the screen."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def subject(key: str, value: Any, labels: Mapping[str, str] | None) -> str:
    """How a message names a value: ``config key 'k' = v``, or the caller's label for ``key``
    (the CLI names its flags as they were typed, e.g. ``--threshold = 1.5``)."""
    if labels and key in labels:
        return labels[key]
    return f"config key '{key}' = {short(value)}"


def coerce(key: str, value: Any, typ: Any, labels: Mapping[str, str] | None = None) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to ``typ`` or raise ConfigError."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config key '{key}': expected true/false, got {short(value)}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected an integer, got {short(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key '{key}': expected an integer, got {short(value)}")
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected a number, got {short(value)}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}': expected a number, got {short(value)}")
    if typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{key}': expected a string, got {short(value)}")
    if typ == list[float]:  # a YAML list, or "1,0.5" as typed on a command line
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (int, float)):
            items = [items]
        try:
            if isinstance(items, (list, tuple)) and not any(isinstance(v, bool) for v in items):
                return [float(v) for v in items]
        except (TypeError, ValueError):
            pass
        raise ConfigError(f"{subject(key, value, labels)} is not a comma-separated list of numbers")
    raise ConfigError(f"config key '{key}': cannot set a value of type {typ}")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if not isinstance(k, str):
            raise ConfigError(
                f"config key {short(k)} under '{prefix or 'top level'}' is not a string"
            )
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def check(obj: Any, prefix: str = "", labels: Mapping[str, str] | None = None) -> None:
    """Check every key of ``obj``, the config section at ``prefix`` ("" for a whole Config),
    against the rules written with its field; raise ConfigError naming the first bad value."""
    for f in dataclasses.fields(obj):
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check(value, key, labels)
            continue
        # NaN passes every comparison, so refuse non-finite numbers before any rule
        items = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            raise ConfigError(f"{subject(key, value, labels)} is not a finite number")
        for r in f.metadata.get("rules", ()):
            problem = r.error(value)
            if problem:
                raise ConfigError(f"{subject(key, value, labels)}{problem}")
