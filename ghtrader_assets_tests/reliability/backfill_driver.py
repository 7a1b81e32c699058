"""Run one futures range backfill in its own process, as a launched run would: a persistent Dagster
instance under $DAGSTER_HOME, the real tqsdk client (TQ_* env points it at a simulator) and a QuestDB.
Secrets come from the environment (TQSDK_PASSWORD, QUESTDB_PASSWORD) through dg.EnvVar, as deployed.

    python -m ghtrader_assets_tests.reliability.backfill_driver '{"variety": "SHFE.rb", "first": ..., ...}'

Prints one JSON line: success, failure message, run id, elapsed seconds. Used by the reliability tests
that SIGKILL the run or stop QuestDB under it."""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    import dagster as dg

    from ghtrader_assets.defs.futures.assets import build_futures_assets
    from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
    from ghtrader_assets.defs.resources import QuestDBResource

    resources = {
        "questdb": QuestDBResource(host=args.get("host", "127.0.0.1"), http_port=args["http_port"],
                                   pg_port=args["pg_port"], password=dg.EnvVar("QUESTDB_PASSWORD"),
                                   **args.get("questdb_timeouts", {})),
        "tqsdk": TqSdkResource(user="sim", password=dg.EnvVar("TQSDK_PASSWORD"), **args.get("tqsdk", {})),
        "futures": FuturesSettings(start_date=args["start_date"], now=args["now"], schedule_source="continuous_table"),
    }
    variety = args["variety"]
    tags = {"dagster/asset_partition_range_start": f"{args['first']}|{variety}",
            "dagster/asset_partition_range_end": f"{args['last']}|{variety}"}
    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(build_futures_assets(tuple(args["varieties"])),
                                selection=["underlying_ticks", "main_l5", "day_index"], resources=resources,
                                instance=instance, tags=tags, raise_on_error=False)
    failures = [str(e.event_specific_data.error) for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    print(json.dumps({"success": result.success, "failure": failures[0] if failures else "",
                      "run_id": result.run_id, "elapsed_s": time.monotonic() - started}), flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
