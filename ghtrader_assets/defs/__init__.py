"""Dagster wiring: resources, partitions, assets, checks, schedules and sensors."""
