"""The futures chain as plain steps (no Dagster): calendar and sessions, the main schedule and each variety's
window, the pipelined range of (variety, trading day)s through raw ticks -> main_l5 -> day index, and the
ledger (coverage, re-verification, manifests). The assets in defs/futures coordinate these."""
