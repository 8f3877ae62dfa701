"""Config files: ``accelc.toml`` or ``[tool.accelc]`` in a project's ``pyproject.toml``.

Keys are the command-line option names (``target``, ``pipeline``, ``input-shape`` or
``input_shape``, …). Top-level keys apply to every command that has the option; a table named
after a command (``[compile]``, ``[tool.accelc.compile]``) applies to that command only.
Precedence: command line > command table > top level > built-in default. Without
``--config``, ``./accelc.toml`` and then ``./pyproject.toml`` (if it has ``[tool.accelc]``)
are used when present.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from accelc.errors import ConfigError


def find_config(explicit: str | None) -> Path | None:
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"--config {p}: no such file")
        return p
    for candidate in (Path("accelc.toml"), Path("pyproject.toml")):
        if candidate.is_file() and (candidate.name == "accelc.toml" or _has_tool_table(candidate)):
            return candidate
    return None


def _has_tool_table(path: Path) -> bool:
    try:
        return "accelc" in tomllib.loads(path.read_text()).get("tool", {})
    except (tomllib.TOMLDecodeError, OSError):
        return False


def load_config(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("accelc", {})
    return data


def config_for(data: dict[str, Any], command: str, commands: set[str]) -> dict[str, Any]:
    """The settings that apply to ``command``: top-level keys overlaid by its own table."""
    top = {k: v for k, v in data.items() if not (isinstance(v, dict) and k in commands)}
    own = data.get(command, {}) if isinstance(data.get(command), dict) else {}
    merged = {**top, **own}
    return {k.replace("-", "_"): v for k, v in merged.items()}


def check_keys(data: dict[str, Any], known_by_command: dict[str, set[str]], path: Path) -> None:
    """Reject keys no command knows, and command-table keys that command does not know."""
    all_known = set().union(*known_by_command.values())
    for key, value in data.items():
        if isinstance(value, dict) and key in known_by_command:
            unknown = {k for k in value if k.replace("-", "_") not in known_by_command[key]}
            if unknown:
                raise ConfigError(f"{path}: [{key}] has unknown key(s): {', '.join(sorted(unknown))}",
                                  hint=f"valid keys for {key}: {', '.join(sorted(k.replace('_', '-') for k in known_by_command[key]))}")
        elif key.replace("-", "_") not in all_known:
            raise ConfigError(f"{path}: unknown key {key!r}",
                              hint=f"valid keys: {', '.join(sorted(k.replace('_', '-') for k in all_known))}")
