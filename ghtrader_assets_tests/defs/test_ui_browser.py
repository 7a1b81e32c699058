"""The Dagster UI in a real browser: `dagster dev` on the project's definitions (real QuestDB, TqSdk simulator),
driven by Debian's headless Chromium through Playwright."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ghtrader_assets.io.questdb import QuestDBSettings
from ghtrader_assets.sim.tq import TqSimServer
from ghtrader_assets_tests.fixtures.dagster_dev import VARIETIES, DagsterUI, dagster_dev

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# The closed network here: no GPU, no QUIC, no background calls home (they would hang or fail noisily).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHAIN_ASSETS = ("trading_days", "main_schedule", "underlying_ticks", "main_l5", "day_index")
IBKR_ASSETS = ("ibkr_contracts", "ibkr_hours_bars", "ibkr_minutes_bars")
RUN_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory, questdb_settings: QuestDBSettings,
               tq_sim: TqSimServer) -> Iterator[DagsterUI]:
    with dagster_dev(tmp_path_factory.mktemp("dagster_ui"), questdb_settings, tq_sim) as ui:
        yield ui


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
            # dagster_dev turns the community dialog off; should it open anyway, skip it.
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
