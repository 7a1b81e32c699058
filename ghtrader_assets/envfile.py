"""Read a `.env` file (KEY=VALUE lines, # comments) into os.environ without overriding what is set."""

from __future__ import annotations

import os
from pathlib import Path


def load_env_file(path: Path = Path(".env")) -> list[str]:
    """Apply `path` to os.environ where a variable is not already set; return the names applied."""
    if not path.exists():
        return []
    applied = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip().removeprefix("export ").strip(), value.strip().strip("'\"")
        if key and key not in os.environ:
            os.environ[key] = value
            applied.append(key)
    return applied
