"""The one configuration rule: .env wins over exported variables in every entry point, with a warning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ghtrader_assets.envfile import load_env_file, shadowed, warn_shadowed


def test_env_file_wins_and_each_ignored_export_is_warned(tmp_path: Path, monkeypatch, capsys) -> None:
    env = tmp_path / ".env"
    env.write_text("# comment\nQUESTDB_PG_PORT=8812\nexport GHTRADER_NOW='2024-03-01T18:00:00+08:00'\nTQSDK_PASSWORD=x\n")
    monkeypatch.setenv("QUESTDB_PG_PORT", "18812")
    monkeypatch.setenv("TQSDK_PASSWORD", "exported-secret")
    monkeypatch.delenv("GHTRADER_NOW", raising=False)
    assert set(shadowed(env)) == {"QUESTDB_PG_PORT", "TQSDK_PASSWORD"}
    load_env_file(env)
    assert os.environ["QUESTDB_PG_PORT"] == "8812" and os.environ["GHTRADER_NOW"].startswith("2024-03-01")
    err = capsys.readouterr().err
    assert "QUESTDB_PG_PORT from the environment is ignored" in err and "'18812' -> '8812'" in err
    assert "TQSDK_PASSWORD" in err and "exported-secret" not in err


def test_the_scripts_warning_command_and_an_equal_export_is_silent(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GHTRADER_LOOKBACK_DAYS=5\nGHTRADER_START_DATE=2024-01-02\n")
    env = {**os.environ, "GHTRADER_LOOKBACK_DAYS": "9", "GHTRADER_START_DATE": "2024-01-02"}
    out = subprocess.run([sys.executable, "-m", "ghtrader_assets.envfile", ".env"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True)
    assert "GHTRADER_LOOKBACK_DAYS from the environment is ignored" in out.stderr
    assert "GHTRADER_START_DATE" not in out.stderr
    assert warn_shadowed(tmp_path / "missing.env") == []


def test_the_dagster_cli_lets_env_win_too(tmp_path: Path, monkeypatch) -> None:
    """Dagster's own loader (what `dagster` and `dagster dev` use): the same rule, so the README holds."""
    from dagster._core.secrets.env_file import get_env_var_dict

    (tmp_path / ".env").write_text("QUESTDB_PG_PORT=8812\n")
    assert get_env_var_dict(str(tmp_path)) == {"QUESTDB_PG_PORT": "8812"}
    from dagster._cli.utils import _inject_local_env_file  # applied over os.environ while the CLI runs
    import logging

    monkeypatch.setenv("QUESTDB_PG_PORT", "18812")
    monkeypatch.chdir(tmp_path)
    with _inject_local_env_file(logging.getLogger("test")):
        assert os.environ["QUESTDB_PG_PORT"] == "8812"
    assert os.environ["QUESTDB_PG_PORT"] == "18812"
