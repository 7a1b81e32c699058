"""Adapters to outside systems (QuestDB, TqSdk, IB Gateway, Parquet files); no Dagster imports."""
