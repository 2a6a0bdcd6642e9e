"""Model presets: YAML files under ``configs/presets/``, each a diff over the dataclass defaults.

``build_config`` applies the chosen preset (``model.preset``, default ``tiny``) before the
experiment's YAML file, reading it with the same loader as every config file; each preset file
names itself under ``model.preset``, so built alone it is the preset.
"""

from __future__ import annotations

from typing import Any

from .recipes import PRESET_DIR
from .values import flatten
from .yaml_io import load_yaml

# The order messages and choices have always listed the presets in; a new preset file is listed
# after these, by name.
_FIRST = ("tiny", "paper", "offline")


def _read() -> dict[str, dict[str, Any]]:
    """Every preset file as flat ``key: value`` pairs, by name."""
    names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    ordered = [n for n in _FIRST if n in names] + [n for n in names if n not in _FIRST]
    return {name: flatten(load_yaml(PRESET_DIR / f"{name}.yaml")) for name in ordered}


#: The model presets by name: their files' keys as dotted keys. Read once, when imported.
PRESETS: dict[str, dict[str, Any]] = _read()


def preset_names() -> tuple[str, ...]:
    """The names ``model.preset`` allows."""
    return tuple(PRESETS)
