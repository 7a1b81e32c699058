"""The Dagster UI in a real browser: `dagster dev` on the project's definitions (real QuestDB, TqSdk simulator),
driven by Debian's headless Chromium through Playwright."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ghtrader_assets.io.questdb import QuestDBSettings
from ghtrader_assets.sim.tq import TqSimServer

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# The closed network here: no GPU, no QUIC, no background calls home (they would hang or fail noisily).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHAIN_ASSETS = ("trading_days", "main_schedule", "underlying_ticks", "main_l5", "day_index")
IBKR_ASSETS = ("ibkr_contracts", "ibkr_hours_bars", "ibkr_minutes_bars")
VARIETIES = "SHFE.cu,DCE.m"
START_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def example_env() -> dict[str, str]:
    """Every setting the project documents, with its example value (.env.example, KEY=VALUE lines)."""
    env = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            env[key.strip()] = value.strip()
    return env


def definitions_env(questdb: QuestDBSettings, srv: TqSimServer, scratch: Path) -> dict[str, str]:
    """What the code location needs: every documented setting (so a newly added one is never missing),
    then QuestDB, TqSdk pointed at the simulator, the chain's test settings, and IBKR files in `scratch`."""
    return {
        **example_env(),
        "QUESTDB_HOST": questdb.host,
        "QUESTDB_HTTP_PORT": str(questdb.http_port),
        "QUESTDB_PG_PORT": str(questdb.pg_port),
        "QUESTDB_USER": questdb.user,
        "QUESTDB_PASSWORD": questdb.password,
        "GHTRADER_QUESTDB_EXTERNAL": "1",
        "TQSDK_USER": "sim",
        "TQSDK_PASSWORD": "sim",
        "GHTRADER_START_DATE": "2024-01-02",
        "GHTRADER_NOW": "2024-04-12T17:00:00+08:00",
        "GHTRADER_SCHEDULE_SOURCE": "backtest",
        "GHTRADER_VARIETIES": VARIETIES,
        # Nothing IBKR runs here; should anything write, it writes into the test's directory.
        "GHTRADER_IB_DATA_ROOT": str(scratch / "raw" / "ib"),
        "GHTRADER_STATE_DIR": str(scratch / "state"),
        "GHTRADER_IB_UNIVERSE": "",
        **srv.env(),
    }


@dataclass
class DagsterUI:
    url: str
    home: Path
    log: Path
    env: dict[str, str]  # the code location's settings (without the inherited environment)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            out = json.loads(resp.read())
        assert "errors" not in out, out
        return out["data"]

    def runs(self) -> list[dict]:
        data = self.graphql("""{ runsOrError { ... on Runs { results {
            runId status tags { key value } assetSelection { path } } } } }""")
        return data["runsOrError"]["results"]

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _stop_group(proc: subprocess.Popen) -> None:
    """dagster dev may ignore SIGTERM when headless: SIGTERM the group, then SIGKILL whatever is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory, questdb_settings: QuestDBSettings,
               tq_sim: TqSimServer) -> Iterator[DagsterUI]:
    """`dagster dev` (webserver + daemon) on a free loopback port with a throw-away DAGSTER_HOME."""
    base = tmp_path_factory.mktemp("dagster_ui")
    home, user_home = base / "dagster_home", base / "home"
    home.mkdir()
    user_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    # `dagster dev` loads the .env of its working directory OVER the environment, so it runs from a
    # directory without one (a developer's .env must not change what the test sees); the code location
    # itself still runs from the project root.
    workspace = base / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: ghtrader_assets.definitions\n"
        f"      location_name: ghtrader_assets\n      working_directory: {json.dumps(str(ROOT))}\n"
    )
    port = _free_port()
    defs_env = definitions_env(questdb_settings, tq_sim, base)
    env = {**os.environ, **defs_env, "DAGSTER_HOME": str(home),
           # tqsdk keeps a tick cache under ~/.tqsdk keyed by symbol only: give the runs their own.
           "HOME": str(user_home)}
    log = base / "dagster.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
            cwd=base, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    ui = DagsterUI(f"http://127.0.0.1:{port}", home, log, defs_env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster dev exited with {proc.returncode}:\n{ui.log_tail()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{ui.url}/server_info", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dagster dev did not answer within {START_TIMEOUT_S:.0f} s:\n{ui.log_tail()}", pytrace=False)
            time.sleep(0.5)
        yield ui
    finally:
        _stop_group(proc)


def defined_asset_keys(env: dict[str, str]) -> set[str]:
    """Every asset the code location defines, read through Dagster's Python API (with the location's env)."""
    import dagster as dg

    from ghtrader_assets import definitions

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        defs = definitions.defs() if callable(definitions.defs) else definitions.defs
        assert isinstance(defs, dg.Definitions)
        return {key.to_user_string() for key in defs.resolve_all_asset_keys()}


@pytest.fixture
def page(tmp_path: Path) -> Iterator:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # the UI polls; a cold page can take several seconds
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-test-deps.sh", pytrace=False)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1100})
            pg.set_default_timeout(30_000)
            # The first visit may open a "Join the Dagster community" dialog over whatever the test clicks.
            pg.add_locator_handler(pg.get_by_text("Join the Dagster community"),
                                   lambda: pg.get_by_role("button", name="Skip").click())
            yield pg
            pg.screenshot(path=str(tmp_path / "last_page.png"))  # where the test ended, passed or failed
        finally:
            browser.close()


def wait_for_run(ui: DagsterUI, match, what: str, timeout: float = RUN_TIMEOUT_S) -> dict:
    """The first run `match` accepts, once finished; fails on a failed/canceled run or a timeout."""
    deadline = time.monotonic() + timeout
    run = None
    while time.monotonic() < deadline:
        run = next((r for r in ui.runs() if match(r)), None)
        if run and run["status"] == "SUCCESS":
            return run
        if run and run["status"] in ("FAILURE", "CANCELED"):
            break
        time.sleep(1)
    pytest.fail(f"{what}: run {run and run['runId']} ended {run and run['status']} "
                f"(waited up to {timeout:.0f} s)\n{ui.log_tail()}", pytrace=False)


def visible_text(pg, text: str):  # pg: a Page or a Locator to search within
    # Dagster renders names twice (a hidden copy measures truncation): take the visible one.
    return pg.get_by_text(text, exact=True).filter(visible=True).first


def test_catalog_lists_every_defined_asset(dagster_ui: DagsterUI, page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    defined = defined_asset_keys(dagster_ui.env)
    assert set(CHAIN_ASSETS) <= defined
    # Every defined asset must be listed: the IBKR family too, whenever the definitions carry it.
    ibkr = set(IBKR_ASSETS) & defined
    assert not ibkr or ibkr == set(IBKR_ASSETS), f"part of the IBKR family is defined: {sorted(ibkr)}"
    page.goto(f"{dagster_ui.url}/assets")
    for name in sorted(defined):
        expect(page.locator(f'a[href="/assets/{name}"]').filter(visible=True).first).to_be_visible()
    page.screenshot(path=str(tmp_path / "catalog.png"))

    page.goto(f"{dagster_ui.url}/asset-groups~group%3A%22futures%22")  # the lineage graph of one group
    for name in CHAIN_ASSETS:
        expect(visible_text(page, name)).to_be_visible()
    page.screenshot(path=str(tmp_path / "lineage.png"))


def test_a_partition_materializes_from_the_ui(dagster_ui: DagsterUI, page, tq_sim: TqSimServer,
                                              tmp_path: Path) -> None:
    from playwright.sync_api import expect

    ui, url = dagster_ui, dagster_ui.url
    # 1. trading_days through its Materialize button: it creates the dynamic trading_day partitions.
    page.goto(f"{url}/assets/trading_days")
    page.locator("button").filter(has_text=re.compile(r"^\s*Materialize\s*$")).first.click()
    expect(page.get_by_text(re.compile(r"Launched run"))).to_be_visible()
    wait_for_run(ui, lambda r: [a["path"] for a in r["assetSelection"] or []] == [["trading_days"]], "trading_days")

    # 2. The chain's per-day assets show variety x trading_day, one partition per trading day and variety.
    days = [d.isoformat() for d in tq_sim.market.trading_days()]
    varieties = VARIETIES.split(",")
    page.goto(f"{url}/assets/main_l5?view=partitions")
    expect(page.get_by_text(f"{len(days) * len(varieties)} Partitions Selected")).to_be_visible()
    expect(page.get_by_placeholder(re.compile(r"^Filter by trading_day"))).to_be_visible()
    expect(page.get_by_placeholder(re.compile(r"^Filter by variety"))).to_be_visible()
    for name in (days[0], days[1], *varieties):  # the day list is virtualized: only its top is drawn
        expect(visible_text(page, name)).to_be_visible()
    page.screenshot(path=str(tmp_path / "main_l5_partitions.png"))

    # 3. One main_schedule partition (SHFE.cu) through the launch dialog.
    page.goto(f"{url}/assets/main_schedule")
    page.locator("button").filter(has_text=re.compile(r"^\s*Materialize")).first.click()
    dialog = page.locator(".dagster-dialog")
    expect(dialog.get_by_text("Launch runs to materialize main_schedule")).to_be_visible()
    dialog.get_by_text("Select a partition or create one").click()
    visible_text(page.locator(".dagster-popover"), "SHFE.cu").click()
    dialog.get_by_text("Launch runs to materialize main_schedule").click()  # closes the partition picker
    dialog.get_by_role("button", name="Launch 1 run").click()
    expect(page.get_by_text(re.compile(r"Launched run"))).to_be_visible()
    run = wait_for_run(ui, lambda r: {"key": "dagster/partition", "value": "SHFE.cu"} in r["tags"]
                       and [a["path"] for a in r["assetSelection"] or []] == [["main_schedule"]], "main_schedule SHFE.cu")

    # 4. The run page agrees, and the partition shows as materialized.
    page.goto(f"{url}/runs/{run['runId']}")
    expect(page.get_by_text("Success", exact=True).filter(visible=True).first).to_be_visible()
    page.screenshot(path=str(tmp_path / "run.png"))
    page.goto(f"{url}/assets/main_schedule?view=partitions")
    expect(page.get_by_text("Materialized (1)")).to_be_visible()
    page.screenshot(path=str(tmp_path / "main_schedule_partitions.png"), full_page=True)
