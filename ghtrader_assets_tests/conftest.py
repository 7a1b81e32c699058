"""Shared pytest set-up: fixture plugins for the real QuestDB server and the two simulators."""

pytest_plugins = [
    "ghtrader_assets_tests.fixtures.questdb",
    "ghtrader_assets_tests.fixtures.tq_sim",
    "ghtrader_assets_tests.fixtures.ib_sim",
    "ghtrader_assets_tests.fixtures.postgres",
]
