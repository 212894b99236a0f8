"""The connection form for Airflow versions that read it from the hook class (before 3.2).

Airflow 3.2+ reads ``conn-fields`` and ``ui-field-behaviour`` from the provider metadata. Older
versions call ``get_connection_form_widgets`` and ``get_ui_field_behaviour``, and only when they
sit in the hook class's own ``__dict__``; both hook classes define them and delegate here, so the
form is declared once (``CONN_FIELDS``) and the two paths cannot drift. Airflow accepts only
StringField, IntegerField, PasswordField and BooleanField widgets; a choice is a StringField with
an ``any_of`` validator, which the UI shows as a select. Every field is optional there (Airflow 3.1
types each one as nullable), and a JSON object (proxies) is a text box whose text the connection
config parses.
"""

from __future__ import annotations

from typing import Any


def ui_field_behaviour() -> dict[str, Any]:
    from airflow_provider_atlasflex.get_provider_info import UI_FIELD_BEHAVIOUR

    return {
        "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
        "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
        "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
    }


def connection_form_widgets() -> dict[str, Any]:
    """wtforms fields built from ``CONN_FIELDS`` (imported here: DAG files never pay for wtforms)."""
    # Only the Airflow UI has these installed (or mocks them); never imported at DAG parse time.
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget  # type: ignore[import-not-found]
    from flask_babel import lazy_gettext  # type: ignore[import-not-found]
    from wtforms import BooleanField, IntegerField, StringField  # type: ignore[import-untyped,unused-ignore]
    from wtforms.validators import NumberRange, Optional, any_of  # type: ignore[import-untyped,unused-ignore]

    from airflow_provider_atlasflex.get_provider_info import CONN_FIELDS

    widgets: dict[str, Any] = {}
    for name, spec in CONN_FIELDS.items():
        schema = spec["schema"]
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        label = lazy_gettext(spec["label"])
        common: dict[str, Any] = {"description": spec.get("description", "")}
        if "default" in schema:
            common["default"] = schema["default"]
        if "boolean" in kinds:
            widgets[name] = BooleanField(label, **common)
        elif "integer" in kinds:
            bounds = NumberRange(min=schema.get("minimum"), max=schema.get("maximum"))
            widgets[name] = IntegerField(label, validators=[Optional(), bounds], widget=BS3TextFieldWidget(), **common)
        elif "enum" in schema:
            choices = [value for value in schema["enum"] if value is not None]
            validators = [Optional(), any_of(choices)]  # empty is allowed: the connection config has a default
            widgets[name] = StringField(label, validators=validators, widget=BS3TextFieldWidget(), **common)
        else:  # strings, numbers with a fraction (timeout), JSON objects (proxies: parsed from the text)
            if "default" in common:
                common["default"] = str(common["default"])
            widgets[name] = StringField(label, validators=[Optional()], widget=BS3TextFieldWidget(), **common)
    return widgets
