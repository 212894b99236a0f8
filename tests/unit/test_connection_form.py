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
    sharing = fields["sharing_scope"]
    assert sharing["schema"]["enum"] == ["auto", "host", "deployment", "process"] and sharing["value"] == "auto"
    assert all(field["description"] for field in fields.values())
    # Airflow 3.1 types every widget field as nullable: none of them blocks Save while empty.
    assert all("null" in field["schema"]["type"] for field in fields.values())


def test_every_metadata_field_may_stay_empty():
    # Airflow >= 3.2 marks a field whose schema type does not admit null as required, and keeps Save disabled
    # while it is empty ("Token sharing" did, for API keys too).
    for name, spec in CONN_FIELDS.items():
        assert "null" in spec["schema"]["type"], name
        assert None not in spec["schema"].get("enum", []), name  # an empty select is Airflow's own "no value"
        assert spec.get("description"), name
    assert CONN_FIELDS["timeout"]["schema"]["maximum"] == 3600
    assert CONN_FIELDS["verify"]["schema"] == {"type": ["boolean", "null"], "default": True}


# What Airflow calls sensitive, by minor (DEFAULT_SENSITIVE_FIELDS in its secrets masker): a field whose name
# contains one of these is shown and saved as "***" by the connection form. The installed minor is also checked
# through Airflow's own REST model below; this list covers the minors that are not installed.
SENSITIVE_NAMES = {
    "3.1": "access_key access_token api_key apikey authorization connection_string passphrase passwd password "
    "private_key proxy proxies secret token keyfile_dict service_account",
    "3.2": "access_key access_token api_key apikey auth_header authorization bearer connection_string dsn passphrase "
    "passwd password private_key proxy proxy_password proxies secret service_account service_key token "
    "keyfile_dict webhook_url",
    "3.3": "access_key access_token api_key apikey auth_header authorization bearer connection_string dsn passphrase "
    "passwd password private_key proxy proxy_password proxies secret service_account service_key token "
    "keyfile_dict webhook_url",
}
# A proxy URL may hold a user and password: masking it is what Airflow means to do (docs/connection-form.md).
MASKED_ON_PURPOSE = {"proxies"}


@pytest.mark.parametrize("minor", sorted(SENSITIVE_NAMES))
def test_no_field_name_makes_airflow_mask_its_value(minor):
    for name in set(CONN_FIELDS) - MASKED_ON_PURPOSE:
        assert not [word for word in SENSITIVE_NAMES[minor].split() if word in name], name


def test_the_installed_airflow_shows_every_saved_value_but_the_secrets():
    # The REST model the form reads a saved connection through (Edit): only the password and proxies are masked.
    import json

    datamodels = pytest.importorskip("airflow.api_fastapi.core_api.datamodels.connections")
    saved = {name: f"value of {name}" for name in CONN_FIELDS}
    shown = datamodels.ConnectionResponse.model_validate(
        {"conn_id": "atlas", "conn_type": "mongodb_atlas", "description": None, "host": None, "login": "pubkey01",
         "schema": None, "port": None, "password": "private-key-0001", "extra": json.dumps(saved), "team_name": None}
    )
    extra = json.loads(shown.extra)
    assert {name for name, value in extra.items() if value == "***"} == MASKED_ON_PURPOSE
    assert shown.password == "***" and shown.login == "pubkey01"


def test_placeholders_are_declared_only_where_airflow_shows_them():
    # Airflow's UI (3.1 to 3.3) shows placeholders for the standard fields only; an extra field's example
    # belongs in its description, which every minor shows under the field.
    standard = {"description", "schema", "host", "port", "login", "password"}
    behaviour = AtlasFlexHook.get_ui_field_behaviour()
    assert set(behaviour["placeholders"]) <= standard - set(behaviour["hidden_fields"])
    assert "5f1b2c3d4e5f60718293a4b5" in CONN_FIELDS["group_id"]["description"]
    assert "/etc/ssl/certs/" in CONN_FIELDS["ca_bundle"]["description"]


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
    placeholders = {name: getattr(meta.standard_fields, name).placeholder for name in ("host", "login", "password")}
    assert placeholders == {name: AtlasFlexHook.get_ui_field_behaviour()["placeholders"][name] for name in placeholders}


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

    from airflow_provider_atlasflex.hooks import connection_extras
    from tests.unit.conftest import set_connection

    monkeypatch.setattr(connection_extras, "_WARNED", set())
    set_connection(monkeypatch, login="pubkey01", password="x" * 8, extra=extra)
    with caplog.at_level(logging.WARNING, "airflow_provider_atlasflex"):
        AtlasFlexHook().config  # noqa: B018
        AtlasFlexHook().config  # noqa: B018 - a second hook: no second warning
    warnings = [r.getMessage() for r in caplog.records if "unknown extra" in r.getMessage()]
    assert len(warnings) == 1 and says in warnings[0] and repr(next(iter(extra))) in warnings[0]


def _config(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> Any:
    from airflow_provider_atlasflex.hooks import connection_extras
    from tests.unit.conftest import GROUP, SA_ID, SA_SECRET, set_connection

    monkeypatch.setattr(connection_extras, "_WARNED", set())
    set_connection(monkeypatch, login=SA_ID, password=SA_SECRET, extra={"group_id": GROUP, **extra})
    return AtlasFlexHook().config


def test_the_form_left_empty_reads_as_the_defaults(monkeypatch):
    # What Airflow 3.2+ saves for a form whose optional fields were left empty (or cleared).
    config = _config(monkeypatch, **{name: None for name in CONN_FIELDS if name != "group_id"})
    assert (config.auth_type, config.timeout, config.max_retries, config.verify) == ("service_account", 60.0, 5, True)
    assert config.proxies is None and config.allow_insecure_http is False and config.token_sharing in ("host", "deployment")


@pytest.mark.parametrize("scope", ["host", "deployment", "process"])
def test_sharing_scope_is_read(monkeypatch, scope):
    config = _config(monkeypatch, sharing_scope=scope)
    assert config.token_sharing == scope and config.share_tokens is (scope != "process")


def test_sharing_scope_auto_follows_the_executor(monkeypatch):
    from airflow_provider_atlasflex.hooks.connection_config import default_token_sharing

    assert _config(monkeypatch, sharing_scope="auto").token_sharing == default_token_sharing()


def test_the_old_token_sharing_key_is_still_read_and_warned_about_once(monkeypatch, caplog):
    import logging

    with caplog.at_level(logging.WARNING, "airflow_provider_atlasflex"):
        assert _config(monkeypatch, token_sharing="process").token_sharing == "process"
        AtlasFlexHook().config  # noqa: B018 - a second hook: no second warning
    warnings = [r.getMessage() for r in caplog.records if "token_sharing" in r.getMessage()]
    assert len(warnings) == 1 and "deprecated" in warnings[0] and "'sharing_scope'" in warnings[0]
    assert not [r for r in caplog.records if "unknown extra" in r.getMessage()]


def test_the_new_key_wins_over_the_old_one(monkeypatch, caplog):
    import logging

    with caplog.at_level(logging.WARNING, "airflow_provider_atlasflex"):
        assert _config(monkeypatch, sharing_scope="host", token_sharing="process").token_sharing == "host"
    assert "ignored" in caplog.text


def test_proxies_typed_in_a_text_box_as_the_hint_shows_are_read(monkeypatch):
    # Airflow 3.1's form has a text box for Proxies (JSON) and saves the text as typed.
    typed = '{"https": "http://proxy:3128"}'
    assert typed in CONN_FIELDS["proxies"]["description"]
    assert _config(monkeypatch, proxies=typed).proxies == {"https": "http://proxy:3128"}
    assert _config(monkeypatch, proxies="  ").proxies is None


@pytest.mark.parametrize("typed", ['{"https": "http://user:pw@proxy:3128"', "https=http://user:pw@proxy:3128", '["x"]'])
def test_proxies_text_that_is_not_a_json_object_is_refused_without_echoing_it(monkeypatch, typed):
    with pytest.raises(ValueError, match="proxies") as refused:
        _config(monkeypatch, proxies=typed)
    assert "pw@" not in str(refused.value) and '"https": "http://proxy:3128"' in str(refused.value)
