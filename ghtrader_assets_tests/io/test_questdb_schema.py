"""The schema in code and the tables in PRD.md say the same thing."""

from pathlib import Path

from ghtrader_assets.domain.ticks import TICK_COLUMNS
from ghtrader_assets.io.questdb_schema import ALL_TABLES

PRD = (Path(__file__).resolve().parents[2] / "PRD.md").read_text()


def test_every_table_and_column_is_in_prd() -> None:
    for table in ALL_TABLES:
        rows = [line for line in PRD.splitlines() if line.startswith(f"| `{table.name}` |")]
        assert len(rows) == 1, f"{table.name} has no row in PRD.md's table list"
        row = rows[0]
        for column, kind in table.columns:
            if column in TICK_COLUMNS:
                assert "27 tick columns" in row
                continue
            assert f"`{column}`" in row, f"{table.name}.{column} missing from PRD.md"
        assert ", ".join(table.dedup_keys) in row, f"{table.name} dedup keys differ from PRD.md"
        assert row.rstrip(" |").endswith(table.partition_by), f"{table.name} partitioning differs from PRD.md"


def test_prd_lists_the_tick_columns_in_hash_order() -> None:
    assert "last_price, average, highest, lowest, volume, amount,\nopen_interest" in PRD
    assert TICK_COLUMNS[7:11] == ("bid_price1", "bid_volume1", "ask_price1", "ask_volume1")
