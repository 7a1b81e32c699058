"""Read `.env` into os.environ by the project's one precedence rule: `.env` wins over exported variables.

The rule is the `dagster` CLI's own (it loads ./.env from the working directory over the environment), so
`ghtrader-assets`, the scripts, `dagster dev` and the `dagster` CLI all see the same settings. An exported
variable that `.env` overrides with another value is ignored, and said so on stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def read_env_file(path: Path = Path(".env")) -> dict[str, str]:
    """KEY=VALUE lines (# comments, optional `export `, quotes stripped); {} when the file is missing."""
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip().removeprefix("export ").strip(), value.strip().strip("'\"")
        if key:
            out[key] = value
    return out


def shadowed(path: Path = Path(".env"), environ: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Exported variables that `.env` overrides with a different value: name -> (exported, .env)."""
    env = os.environ if environ is None else environ
    return {k: (env[k], v) for k, v in read_env_file(path).items() if k in env and env[k] != v}


def warn_shadowed(path: Path = Path(".env"), environ: dict[str, str] | None = None) -> list[str]:
    """Warn (stderr) about every exported variable `.env` overrides; secrets are named, never shown."""
    lines = []
    for key, (exported, value) in sorted(shadowed(path, environ).items()):
        secret = "PASSWORD" in key or "SECRET" in key or "TOKEN" in key
        shown = "(hidden)" if secret else f"{exported!r} -> {value!r}"
        lines.append(f"warning: {key} from the environment is ignored, {path} sets it: {shown} "
                     f"(rule: .env wins; edit .env or remove the line to use the exported value)")
    for line in lines:
        print(line, file=sys.stderr)
    return lines


def load_env_file(path: Path = Path(".env")) -> list[str]:
    """Apply `path` to os.environ over what is set (warning about overridden values); return the names."""
    values = read_env_file(path)
    warn_shadowed(path)
    os.environ.update(values)
    return sorted(values)


if __name__ == "__main__":  # `python -m ghtrader_assets.envfile [path]`: warn only (scripts call it)
    warn_shadowed(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".env"))
