"""Reading config YAML safely: experiment files, recipes, presets and ``key=value`` overrides.

``ConfigLoader`` refuses aliases and duplicate keys; every error names the file and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .values import short


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is parsed as YAML scalar (so 1e-3, true, 5 work)."""
    if "=" not in text:
        raise ConfigError(f"override {short(text)} is not of the form key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if value is None:
        value = raw
    return key.strip(), value


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses what a config never needs and an attacker can abuse.

    Aliases (``*name``) are refused as they are met, before anything is expanded: nine nested
    aliases of nine make 810 bytes that expand to 9^9 keys (the "billion laughs"). A key given
    twice in one mapping is refused too (plain YAML keeps the last silently). ``name`` (the
    file) goes into the messages; see ``parse_yaml``.
    """

    name = "<string>"

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"config file '{self.name}' line {event.start_mark.line + 1}: uses the YAML "
                f"alias *{event.anchor[:40]}; aliases are not accepted in config files (write the "
                "value out)"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class says so
                break
            if duplicate:
                raise ConfigError(
                    f"config file '{self.name}' line {key_node.start_mark.line + 1}: key "
                    f"{short(key)} is given twice in the same mapping"
                )
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, name: str) -> Any:
    """Parse ``text`` (from file ``name``) with ``ConfigLoader``: no aliases, no duplicate keys.

    Raises:
        ConfigError: an alias or a duplicate key, naming ``name`` and the line.
        yaml.YAMLError: the text is not YAML.
    """
    loader = ConfigLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_problem(e: Exception) -> str:
    """PyYAML's several-line message as one line: the problem and where (line, column)."""
    problem = getattr(e, "problem", None) or getattr(e, "context", None)
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if problem is None:
        return " ".join(str(e).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read an experiment YAML (a mapping) with a clear error for a missing or bad file."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file '{p}' is a folder, not a YAML file")
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist")
    try:
        data = parse_yaml(p.read_text(encoding="utf-8"), str(p))
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file '{p}' is not UTF-8 text ({e.reason} at byte {e.start})"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file '{p}' is not valid YAML: {yaml_problem(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file '{p}' must hold a mapping of keys, got {type(data).__name__}"
        )
    return data
