"""The IBKR resources: every setting of the table shown with its default, wired to its variable, and validated."""

from __future__ import annotations

import dagster as dg
import pytest

from ghtrader_assets.defs.ibkr.resources import IBGatewayResource, IBKRStorageResource, ibkr_resources
from ghtrader_assets.ibkr_settings import SETTINGS, resolve


@dg.asset
def gateway_probe(ib_gateway: IBGatewayResource, ibkr_storage: IBKRStorageResource) -> dg.MaterializeResult:
    settings = ib_gateway.settings()
    return dg.MaterializeResult(metadata={"port": settings.port, "rate": settings.rate_per_s,
                                          "scope": ibkr_storage.paths().scope})


def _run(resources: dict) -> dg.ExecuteInProcessResult:
    return dg.materialize([gateway_probe], resources=resources, raise_on_error=False,
                          instance=dg.DagsterInstance.ephemeral())


def _failure(result: dg.ExecuteInProcessResult) -> str:
    return " ".join(str(e.event_specific_data) for e in result.all_events if e.is_failure)


def test_every_setting_is_a_resource_field_with_the_table_default() -> None:
    fields = {**IBGatewayResource.model_fields, **IBKRStorageResource.model_fields}
    fields["universe"] = fields.pop("universe_path")
    assert set(fields) == {s.name for s in SETTINGS}
    for setting in SETTINGS:
        assert fields[setting.name].default == setting.config_default, setting.name
        assert setting.env in (fields[setting.name].description or ""), setting.name
    assert resolve({**IBGatewayResource().values(), **IBKRStorageResource().values()}, {}) == resolve({}, {})


def test_bad_config_value_fails_the_run_naming_the_setting_and_variable() -> None:
    result = _run({"ib_gateway": IBGatewayResource(max_in_flight=51), "ibkr_storage": IBKRStorageResource()})
    assert not result.success
    message = _failure(result)
    assert "max_in_flight" in message and "GHTRADER_IB_MAX_IN_FLIGHT" in message, message[:500]

    result = _run({"ib_gateway": IBGatewayResource(), "ibkr_storage": IBKRStorageResource(max_err_share=2.0)})
    assert not result.success and "max_err_share" in _failure(result)


def test_variables_are_wired_and_win_over_defaults_config_wins_over_them(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"IB_PORT": "4010", "GHTRADER_IB_RATE": "3.5", "GHTRADER_IB_SCOPE": "env", "GHTRADER_IB_UNIVERSE": " "}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    resources = ibkr_resources(environ)
    gateway, storage = resources["ib_gateway"], resources["ibkr_storage"]
    assert isinstance(gateway, IBGatewayResource) and isinstance(storage, IBKRStorageResource)
    assert storage.universe_path == ""  # blank: not given, the default
    result = _run(resources)
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert (metadata["port"].value, metadata["rate"].value, metadata["scope"].value) == (4010, 3.5, "env")
    result = dg.materialize([gateway_probe], resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            run_config={"resources": {"ib_gateway": {"config": {"port": 4020}}}})
    assert result.get_asset_materialization_events()[0].materialization.metadata["port"].value == 4020


def test_bad_variables_name_the_setting() -> None:
    with pytest.raises(ValueError, match=r"rate_per_s \(GHTRADER_IB_RATE\): invalid value 'fast'"):
        ibkr_resources({"GHTRADER_IB_RATE": "fast"})
    with pytest.raises(ValueError, match=r"port \(IB_PORT\): invalid value 'x'"):
        resolve({}, {"IB_PORT": "x"})
    with pytest.raises(ValueError, match=r"horizon_months \(env GHTRADER_IB_HORIZON_MONTHS\)"):
        resolve({}, {"GHTRADER_IB_HORIZON_MONTHS": "0"})
    with pytest.raises(ValueError, match=r"expiry_types \(env GHTRADER_IB_EXPIRY_TYPES\)"):
        resolve({}, {"GHTRADER_IB_EXPIRY_TYPES": "daily"})
