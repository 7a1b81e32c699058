"""Tick downloads keep nothing: two clients downloading the same contract day at once, in two processes, each
get the whole day and leave no file behind; a session does not keep the ticks it downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from ghtrader_assets.sim.tq import TqSimServer

ROOT = Path(__file__).resolve().parents[2]
DOWNLOAD = """
import json, sys
from datetime import date
from ghtrader_assets.io.tqsdk_client import TqSdkClient, TqSettings
contract, day = sys.argv[1], date.fromisoformat(sys.argv[2])
with TqSdkClient(TqSettings("sim", "sim")) as tq:
    frames = [tq.ticks(contract, day) for _ in range(3)]
print(json.dumps({"rows": [f.height for f in frames]}))
"""


def test_two_processes_downloading_one_contract_write_nothing_to_disk(tq_sim: TqSimServer, tmp_path: Path) -> None:
    day = date(2024, 3, 13)
    contract = tq_sim.market.main_contract("SHFE.cu", day)
    env = {**os.environ, **tq_sim.env(), "HOME": str(tmp_path)}  # a private HOME: the shared default cache
    procs = [subprocess.Popen([sys.executable, "-c", DOWNLOAD, contract, day.isoformat()], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    want = len(tq_sim.market.served(contract, day))
    assert all(r["rows"] == [want] * 3 for r in results)
    cache = tmp_path / ".tqsdk" / "data_series_1"  # TqSdk's own series cache under the private HOME
    assert not cache.exists() or not [f for f in os.listdir(cache) if not f.endswith(".lock")]


KEPT = """
import json, sys
from datetime import date
from ghtrader_assets.io.tqsdk_client import TqSdkClient, TqSettings
contract, days = sys.argv[1], [date.fromisoformat(d) for d in sys.argv[2:]]
with TqSdkClient(TqSettings("sim", "sim")) as tq:
    rows, kept, diffs = [], [], []
    for day in days:
        rows.append(tq.ticks(contract, day).height)
        kept.append(len(tq.api()._data["ticks"][contract]["data"]))
        diffs.append(len(tq.api()._sync_diffs))
print(json.dumps({"rows": rows, "kept": kept, "diffs": diffs}))
"""


def test_a_session_does_not_keep_the_ticks_it_downloaded(tq_sim: TqSimServer, tmp_path: Path) -> None:
    """TqApi keeps every received tick, and every DIFF pack that carried it, for the session's life
    (gigabytes over a range); the client drops both after each day, and every day, the same one again
    included, still arrives whole."""
    days = [date(2024, 3, 11), date(2024, 3, 12), date(2024, 3, 13), date(2024, 3, 13), date(2024, 3, 14)]
    contract = tq_sim.market.main_contract("SHFE.cu", days[0])
    env = {**os.environ, **tq_sim.env(), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", KEPT, contract, *map(str, days)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == [len(tq_sim.market.served(contract, d)) for d in days]
    assert max(result["kept"]) <= 2000, result  # at most one chart window past the day's end
    assert max(result["diffs"][1:]) <= 2 * result["diffs"][0], result  # one day's packs at most, not the range's
