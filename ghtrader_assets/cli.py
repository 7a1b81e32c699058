"""Operator commands: the local QuestDB server, the ledger (coverage, verify, manifests), the IBKR stages and
the doctor. (The offline demo is the simulators' own: `python -m ghtrader_assets.sim.demo`.)"""

from __future__ import annotations

import argparse
import importlib
import sys

# Each command family lives in its own module exposing `register(subparsers)`; imported lazily so
# `ghtrader-assets questdb ...` does not pay for tqsdk or ib_insync imports.
COMMAND_MODULES = (
    "ghtrader_assets.io.questdb_server",
    "ghtrader_assets.ledger_cli",
    "ghtrader_assets.ibkr_cli",
    "ghtrader_assets.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ghtrader-assets", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def entry() -> int:
    """The `ghtrader-assets` command: ./.env first, by the one rule of every entry point (.env wins over
    exported variables, as in the dagster CLI; each overridden value is warned about), then `main`."""
    from pathlib import Path

    from ghtrader_assets.envfile import load_env_file

    load_env_file(Path(".env"))
    return main()


if __name__ == "__main__":
    sys.exit(entry())
