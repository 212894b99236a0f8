"""The connection form in a real browser, as a person uses it, on the installed Airflow minor.

A real ``airflow api-server`` serves the UI; headless Chromium (Debian's, through its chromedriver)
opens Admin > Connections, adds a MongoDB Atlas connection for each auth type, saves it, reopens it
in Edit and reads what a person sees there. Then the saved connection is tested through the REST
API (what the provider reads from it) and with the list's Test button.

`make test` runs it on the newest minor and `make ci-matrix` on the oldest (MATRIX_E2E). With
``UPDATE_SCREENSHOTS=1`` it writes the forms to docs/_static/screenshots/ (docs/connection-form.md).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_atlasflex.get_provider_info import UI_FIELD_BEHAVIOUR
from airflow_provider_atlasflex.testing.airflow_sandbox import AirflowSandbox
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.conftest import REPO
from tests.e2e.connection_form_page import ConnectionsPage, missing_browser, start_chromium

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

MINOR = tuple(int(part) for part in importlib.metadata.version("apache-airflow").split(".")[:2])
SCREENSHOTS = REPO / "docs" / "_static" / "screenshots"
PROXIES_AS_THE_HINT_SHOWS = '{"https": "http://proxy:3128"}'


@dataclass(frozen=True)
class Case:
    """One connection typed into the Add form: ``auth``, and what goes in the extra fields."""

    slug: str  # in the screenshots' names
    auth: str
    choices: dict[str, str] = field(default_factory=dict)  # row label -> option
    texts: dict[str, str] = field(default_factory=dict)  # extra name -> text typed
    proxies: str | None = None
    test_says: str = ""  # in the Test's answer for the saved connection


def _ca_bundle() -> str:
    """A PEM file present here (the connection config checks that the path exists)."""
    debian = Path("/etc/ssl/certs/ca-certificates.crt")
    if debian.exists():
        return str(debian)
    import certifi

    return str(certifi.where())


CASES = [
    # Only what has no default: every optional field left as the form opens (the reported bug: Save disabled).
    Case("service-account", "service_account", test_says="it can see 1 project(s)"),
    # Every field set, the proxies typed exactly as their hint shows.
    Case(
        "api-key",
        "digest",
        choices={"Auth type": "digest", "Token sharing": "process"},
        texts={"group_id": "", "timeout": "30", "max_retries": "2", "ca_bundle": ""},
        proxies=PROXIES_AS_THE_HINT_SHOWS,
        test_says="it can read backups and request downloads",
    ),
]


@pytest.fixture(scope="session")  # session: set up before the session's migrated database, which a skip spares
def chromium_ready() -> None:
    """Skip (fail under CI=true) when the browser is missing: checked before the api-server starts."""
    reason = missing_browser()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no browser: {reason}")
        print(f"\nSKIP browser test: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def emulator() -> Iterator[AtlasEmulator]:
    with AtlasEmulator(clusters=("alpha",), snapshot_size=10_000) as emu:
        yield emu


@pytest.fixture(scope="module")
def airflow_ui(chromium_ready: None, migrated_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real api-server (UI and REST API) on a copy of the migrated database, with connection testing on."""
    home = tmp_path_factory.mktemp("airflow-ui")
    shutil.copy2(migrated_home / "airflow.db", home / "airflow.db")
    (home / "dags").mkdir()
    with AirflowSandbox(home, home / "dags").api_server({"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}) as url:
        yield url


@pytest.fixture(scope="module")
def browser(airflow_ui: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium, closed before the api-server stops (its open connections would hold the shutdown)."""
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def _rest(base_url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """The REST API as a script would call it (a token from the all-admins login)."""
    with urllib.request.urlopen(f"{base_url}/auth/token", timeout=30) as answer:
        token = json.load(answer)["access_token"]
    request = urllib.request.Request(
        base_url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def _masked(value: Any) -> bool:
    """Airflow's mask: "***", or (3.2+) a mapping whose values are all "***"."""
    if isinstance(value, dict):
        return bool(value) and all(_masked(item) for item in value.values())
    return value == "***"


def _shot(page: ConnectionsPage, name: str) -> None:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        page.screenshot(SCREENSHOTS / f"{name}-{MINOR[0]}.{MINOR[1]}.png")


def test_add_save_and_edit_the_connection_as_a_person_does(browser, airflow_ui, emulator):
    # Both auth types in one test: one api-server and one browser, also when pytest-xdist spreads the tests.
    for case in CASES:
        try:
            _add_save_and_edit(browser, airflow_ui, emulator, case)
        except AssertionError as failed:
            raise AssertionError(f"{case.slug}: {failed}") from failed


def _add_save_and_edit(browser: Any, airflow_ui: str, emulator: AtlasEmulator, case: Case) -> None:
    conn_id = f"atlas_{case.slug.replace('-', '_')}"
    login, password = (
        (emulator.service_account.client_id, emulator.service_account.client_secret)
        if case.auth == "service_account"
        else (emulator.api_key.public_key, emulator.api_key.private_key)
    )
    texts = {**case.texts}
    if "group_id" in texts:
        texts["group_id"] = emulator.group_id
    if "ca_bundle" in texts:
        texts["ca_bundle"] = _ca_bundle()
    page = ConnectionsPage(browser, airflow_ui, MINOR)

    # ---- Add --------------------------------------------------------------------------------
    page.open()
    page.start_adding(conn_id)
    page.section("Standard Fields")
    for name in ("host", "login", "password"):  # the declared placeholders, as shown in the empty inputs
        assert page.placeholder(name) == UI_FIELD_BEHAVIOUR["placeholders"][name], name
    if case is CASES[0]:
        _shot(page, "connection-add-standard-fields")
    page.type_into("host", emulator.base_url)
    page.type_into("login", login)
    page.type_into("password", password)
    page.section("Extra Fields")
    # Airflow shows no placeholder in an extra field: the examples are in the help text under it.
    assert "5f1b2c3d4e5f60718293a4b5" in page.shown("Default project id")
    assert "/etc/ssl/certs/corporate-ca.pem" in page.shown("CA bundle path")
    assert PROXIES_AS_THE_HINT_SHOWS in page.shown("Proxies (JSON)")
    for label, option in case.choices.items():
        page.choose(label, option)
    for name, text in texts.items():
        page.type_into(f"element_{name}", text)
    if case.proxies:
        page.type_json("Proxies (JSON)", case.proxies)
    page.switch("Allow plain http", True)  # the emulator speaks http
    assert page.save_enabled(), "Save is disabled with every optional field as the form opened"
    assert not [name for name in page.dialog_buttons() if "test" in name.lower()]  # docs: Test is on the list only
    _shot(page, f"connection-add-{case.slug}")
    page.save()

    # ---- Edit: what a person sees again --------------------------------------------------------
    page.start_editing(conn_id)
    page.section("Extra Fields")
    expected = {
        "Auth type": case.choices.get("Auth type", "service_account"),
        "Token sharing": case.choices.get("Token sharing", "auto"),
        "Default project id": texts.get("group_id", ""),
        "Request timeout": texts.get("timeout", "60"),
        "Max retries": texts.get("max_retries", "5"),
        "CA bundle path": texts.get("ca_bundle", ""),
    }
    for label, value in expected.items():
        shown = page.shown(label)
        assert value in shown, (label, value, shown)
        assert "***" not in shown and "Select Value" not in shown, (label, shown)
    assert page.switched_on("Allow plain http") and page.switched_on("Verify TLS")
    if case.proxies:  # a proxy URL may hold a password: Airflow masks it on purpose
        assert "***" in page.shown("Proxies (JSON)")
    if case.proxies:  # the connection with every field set
        _shot(page, f"connection-edit-{case.slug}")
    assert not [name for name in page.dialog_buttons() if "test" in name.lower()]
    page.type_into("element_max_retries", "3")  # one change (3.1 enables Save only then); the masked values stay
    page.section("Standard Fields")
    assert login in page.shown("Public key / client id")
    page.save()

    # ---- What the provider reads from the saved connection --------------------------------------
    saved = _rest(airflow_ui, "GET", f"/api/v2/connections/{conn_id}")
    extra = json.loads(saved["extra"])
    assert [key for key, value in extra.items() if _masked(value)] == (["proxies"] if case.proxies else []), extra
    assert extra.get("sharing_scope") == case.choices.get("Token sharing", "auto") and str(extra["max_retries"]) == "3"
    answer = _rest(airflow_ui, "POST", "/api/v2/connections/test", {"connection_id": conn_id, "conn_type": "mongodb_atlas"})
    assert answer["status"] is True and case.test_says in answer["message"], answer
    toast = page.test_from_list(conn_id)
    if MINOR >= (3, 3):
        # Airflow 3.3.2's list Test sends port 0 for a connection without a port, and its API refuses that
        # as "a host or port that differs from the stored connection" (docs/connection-form.md): upstream.
        assert "Bad Request" in toast, toast
    else:
        assert case.test_says in toast, toast
