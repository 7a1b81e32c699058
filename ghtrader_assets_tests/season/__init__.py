"""A season of daily operation compared with a clean backfill."""
