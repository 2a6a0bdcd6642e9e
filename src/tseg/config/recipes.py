"""The recipes the package ships (``tseg/configs``) and finding an experiment file by name."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .values import flatten
from .yaml_io import load_yaml

#: The experiment files and the demo / benchmark recipes, shipped in the package as
#: ``tseg/configs`` (real files, so a wheel and an editable install read the same ones); the
#: repository's ``configs/`` is a link to it, so the docs' ``configs/<name>.yaml`` is a path in a
#: checkout (and ``config_file`` finds the packaged recipe outside one).
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
#: The model presets' files (``tseg.config.presets``): configs too, but not recipes to train.
PRESET_DIR = CONFIGS / "presets"


def recipe_path(name: str) -> Path:
    """``configs/<name>.yaml``, e.g. ``recipe_path("demo/offline")``."""
    path = CONFIGS / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no recipe '{name}': '{path}' does not exist")
    return path


def config_file(path: str | Path) -> Path:
    """An experiment file as given, else the packaged recipe of that name, so that
    ``configs/refcoco.yaml`` (as the docs write it) and ``refcoco`` work outside a
    checkout too."""
    p = Path(path)
    if p.exists():
        return p
    name = p.as_posix().removesuffix(".yaml").removesuffix(".yml")
    name = name.removeprefix("configs/").removeprefix("./configs/")
    packaged = CONFIGS / f"{name}.yaml"
    if name and ".." not in Path(name).parts and packaged.is_file():
        return packaged
    known = ", ".join(recipe_names())
    raise ConfigError(f"config file '{p}' does not exist (nor is it a packaged recipe: {known})")


def recipe_names() -> list[str]:
    """Every packaged recipe's name (``demo/offline``, ...), the presets' files left out."""
    paths = (p for p in CONFIGS.rglob("*.yaml") if PRESET_DIR not in p.parents)
    return sorted(p.relative_to(CONFIGS).with_suffix("").as_posix() for p in paths)


def recipe_overrides(name: str) -> list[str]:
    """A recipe as ``key=value`` overrides (for scripts that add or drop some of its keys)."""
    return [f"{k}={v}" for k, v in flatten(load_yaml(recipe_path(name))).items()]


def recipes(folder: str) -> list[str]:
    """The recipe names under ``configs/<folder>/`` (e.g. the demo's presets)."""
    return sorted(p.stem for p in (CONFIGS / folder).glob("*.yaml"))
