"""The connection form: typed, defaulted, explained fields on every Airflow 3 minor.

Airflow >= 3.2 reads ``conn-fields`` from the provider metadata; older versions call the hook
class's own ``get_connection_form_widgets``/``get_ui_field_behaviour`` and render the wtforms
fields the way Airflow's ``HookMetaService`` does without Flask installed (its mock fields).
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from airflow_provider_atlasflex.get_provider_info import CONN_FIELDS
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.hooks.atlas_flex_async import AtlasFlexAsyncHook

FORM_METHODS = ("get_connection_form_widgets", "get_ui_field_behaviour")


@pytest.mark.parametrize("hook_class", [AtlasFlexHook, AtlasFlexAsyncHook])
@pytest.mark.parametrize("method", FORM_METHODS)
def test_form_methods_sit_on_each_hook_class_itself(hook_class, method):
    # Airflow < 3.2 checks `method in hook_class.__dict__`: an inherited method is ignored.
    assert method in hook_class.__dict__


@pytest.fixture
def airflow_3_1_form_mocks(monkeypatch: pytest.MonkeyPatch) -> Any:
    """wtforms/flask as Airflow's UI service mocks them when Flask is not installed (Airflow 3.1)."""
    connections = pytest.importorskip("airflow.api_fastapi.core_api.services.ui.connections")
    meta = connections.HookMetaService
    wtforms = types.ModuleType("wtforms")
    wtforms.StringField = meta.MockStringField  # type: ignore[attr-defined]
    wtforms.IntegerField = meta.MockIntegerField  # type: ignore[attr-defined]
    wtforms.BooleanField = meta.MockBooleanField  # type: ignore[attr-defined]
    validators = types.ModuleType("wtforms.validators")
    validators.any_of = meta.MockEnum  # type: ignore[attr-defined]
    validators.Optional = meta.MockOptional  # type: ignore[attr-defined]
    validators.NumberRange = lambda **bounds: object()  # type: ignore[attr-defined]
    babel = types.ModuleType("flask_babel")
    babel.lazy_gettext = str  # type: ignore[attr-defined]
    fab = types.ModuleType("flask_appbuilder")
    widgets = types.ModuleType("flask_appbuilder.fieldwidgets")
    widgets.BS3TextFieldWidget = meta.MockAnyWidget  # type: ignore[attr-defined]
    for name, module in {
        "wtforms": wtforms, "wtforms.validators": validators, "flask_babel": babel,
        "flask_appbuilder": fab, "flask_appbuilder.fieldwidgets": widgets,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    return meta


@pytest.mark.parametrize("hook_class", [AtlasFlexHook, AtlasFlexAsyncHook])
def test_widgets_are_typed_defaulted_and_explained(airflow_3_1_form_mocks, hook_class):
    fields = {name: widget.param.dump() for name, widget in hook_class.get_connection_form_widgets().items()}
    assert set(fields) == set(CONN_FIELDS)
    auth = fields["auth_type"]
    assert auth["schema"]["enum"] == ["service_account", "digest"] and auth["value"] == "service_account"
    assert fields["verify"]["schema"]["type"][0] == "boolean" and fields["verify"]["value"] is True
    assert fields["allow_insecure_http"]["schema"]["type"][0] == "boolean"
    assert fields["allow_insecure_http"]["value"] is False
    assert "3600" in fields["timeout"]["schema"]["title"] and fields["timeout"]["value"] == "60"
    assert fields["max_retries"]["schema"]["type"][0] == "integer" and fields["max_retries"]["value"] == 5
    assert fields["token_sharing"]["schema"]["enum"] == ["host", "deployment", "process"]
    assert all(field["description"] for field in fields.values())


def test_metadata_fields_have_no_null_choice_and_state_their_bounds():
    for name, spec in CONN_FIELDS.items():
        assert None not in spec["schema"].get("enum", []), name
        assert spec.get("description"), name
    assert CONN_FIELDS["timeout"]["schema"]["maximum"] == 3600
    assert CONN_FIELDS["verify"]["schema"] == {"type": "boolean", "default": True}


def test_ui_field_behaviour_is_the_metadata_one():
    behaviour = AtlasFlexAsyncHook.get_ui_field_behaviour()
    assert behaviour == AtlasFlexHook.get_ui_field_behaviour()
    assert "port" in behaviour["hidden_fields"] and behaviour["relabeling"]["login"]


def test_ca_bundle_field_sets_verify(monkeypatch, tmp_path):
    from tests.unit.conftest import GROUP, set_connection

    bundle = tmp_path / "ca.pem"
    bundle.write_text("pem")
    set_connection(monkeypatch, login="pubkey01", password="x" * 8, extra={"group_id": GROUP, "ca_bundle": str(bundle)})
    assert AtlasFlexHook().config.verify == str(bundle)
    set_connection(monkeypatch, login="pubkey01", password="x" * 8, extra={"verify": False, "ca_bundle": str(bundle)})
    with pytest.raises(ValueError, match="both verify=false and a ca_bundle"):
        AtlasFlexHook().config  # noqa: B018


def test_airflow_shows_every_default_unmasked():
    # Airflow masks values of fields whose names look secret (e.g. containing "token"); a masked default
    # would be saved as "***" by the form.
    connections = pytest.importorskip("airflow.api_fastapi.core_api.services.ui.connections")
    meta = {m.connection_type: m for m in connections.HookMetaService.hook_meta_data()}["mongodb_atlas"]
    values = {name: field["value"] for name, field in meta.extra_fields.items()}
    assert "***" not in values.values(), values
    # 3.2+ shows the typed conn-fields (60); 3.1 builds the form from the hook's wtforms widgets ("60").
    assert values["auth_type"] == "service_account" and values["verify"] is True and values["timeout"] in (60, "60")
    assert meta.extra_fields["auth_type"]["schema"]["enum"] == ["service_account", "digest"]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"groupId": "5f1b2c3d4e5f60718293a4b5"}, "did you mean 'group_id'?"),
        ({"auth-type": "digest"}, "did you mean 'auth_type'?"),
        ({"timout": 30}, "did you mean 'timeout'?"),
        ({"colour": "blue"}, "the known keys are allow_insecure_http, auth_type"),
    ],
)
def test_an_unknown_extra_key_is_named_with_the_nearest_known_one(monkeypatch, caplog, extra, says):
    import logging

    from airflow_provider_atlasflex.hooks import connection_config
    from tests.unit.conftest import set_connection

    monkeypatch.setattr(connection_config, "_WARNED", set())
    set_connection(monkeypatch, login="pubkey01", password="x" * 8, extra=extra)
    with caplog.at_level(logging.WARNING, "airflow_provider_atlasflex"):
        AtlasFlexHook().config  # noqa: B018
        AtlasFlexHook().config  # noqa: B018 - a second hook: no second warning
    warnings = [r.getMessage() for r in caplog.records if "unknown extra" in r.getMessage()]
    assert len(warnings) == 1 and says in warnings[0] and repr(next(iter(extra))) in warnings[0]
