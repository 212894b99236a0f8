"""The Connections page of Airflow's UI as a person uses it, driven through Selenium (headless Chromium).

Airflow 3.1 and 3.3 build the form from the same pieces with two differences that matter here: an
extra field's choice is a Chakra select (a button and a list of options) on 3.1 and a react-select
(a text box that filters as you type) on 3.2+, and a JSON field is a text box on 3.1 and a code
editor on 3.2+. Everything else is found by what a person reads: labels, button names, placeholders.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

# Chromium's options for a closed network and a throw-away profile (tests/e2e/test_connection_form_browser.py).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Tall enough that the whole form dialog is on screen (screenshots, no scrolling).
    "--window-size=1280,2600",
)
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_SECONDS = 30.0


def missing_browser() -> str | None:
    """Why a browser test cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not any(Path(path).exists() for path in CHROMIUM) or not Path(CHROMEDRIVER).exists():
        return (
            f"Debian's chromium and chromium-driver are not installed ({CHROMIUM[0]}, {CHROMEDRIVER}); "
            "`make test` installs them with .ci/debian-packages.sh chromium chromium-driver"
        )
    return None


def start_chromium(profile: Path) -> Any:
    """Debian's Chromium through Debian's chromedriver (explicit paths: Selenium downloads nothing)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(path for path in CHROMIUM if Path(path).exists())
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class ConnectionsPage:
    """Admin > Connections: the list, the Add and Edit dialogs, and the list's Test button."""

    def __init__(self, driver: Any, base_url: str, minor: tuple[int, int]) -> None:
        self.driver = driver
        self.base_url = base_url
        self.minor = minor

    # ---- finding things -------------------------------------------------------------------

    def _wait(self, xpath: str, *, visible: bool = True, seconds: float = WAIT_SECONDS) -> Any:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.common.by import By

        deadline = time.monotonic() + seconds
        while True:
            try:
                element = self.driver.find_element(By.XPATH, xpath)
                if not visible or element.is_displayed():
                    return element
            except (NoSuchElementException, StaleElementReferenceException):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"not on the page after {seconds:g} s: {xpath}")
            time.sleep(0.1)

    def _click(self, find: Any) -> None:
        """Click what ``find()`` returns, again while it is still animating in, covered or being replaced."""
        _patiently(lambda: find().click())

    def _send(self, find: Any, *keys: str) -> Any:
        """Send ``keys`` to what ``find()`` returns (as :meth:`_click`); the element."""
        element = None

        def send() -> None:
            nonlocal element
            element = find()
            element.send_keys(*keys)

        _patiently(send)
        return element

    def _button(self, name: str) -> Any:
        return self._wait(f"//button[@aria-label='{name}' or normalize-space(.)='{name}']")

    def row(self, label: str) -> Any:
        """The form row (label, input, description) whose label starts with ``label``."""
        return self._wait(f"//label[starts-with(normalize-space(.), '{label}')]/ancestor::div[@role='group'][1]")

    def shown(self, label: str) -> str:
        """What a person reads in a row: its visible text and the text in its inputs."""
        return _settled(lambda: self._shown(label))

    def _shown(self, label: str) -> str:
        from selenium.webdriver.common.by import By

        row = self.row(label)
        values = [
            element.get_attribute("value") or ""
            for element in row.find_elements(By.XPATH, ".//input[not(@type='checkbox')] | .//textarea")
        ]
        editor = row.find_elements(By.XPATH, ".//*[contains(@class, 'view-lines')]")  # the 3.2+ code editor
        return " | ".join([row.text, *values, *(e.text for e in editor)])

    def switched_on(self, label: str) -> bool:
        from selenium.webdriver.common.by import By

        return _settled(lambda: bool(self.row(label).find_element(By.XPATH, ".//input[@type='checkbox']").is_selected()))

    def placeholder(self, name: str) -> str:
        return self._wait(f"//input[@name='{name}']").get_attribute("placeholder") or ""

    # ---- doing things ---------------------------------------------------------------------

    def open(self) -> None:
        """The list; the first visit logs in (all admins), which lands on the home page on 3.1 (no ?next=)."""
        self.driver.get(self.base_url + "/connections")
        self._wait("//*[@title='Admin' or @aria-label='Admin']")
        if not self.driver.current_url.rstrip("/").endswith("/connections"):
            self.driver.get(self.base_url + "/connections")
        self._button("Add Connection")

    def start_adding(self, conn_id: str) -> None:
        self._click(lambda: self._button("Add Connection"))
        self._send(lambda: self._wait("//input[@name='connection_id']"), conn_id)
        self.choose("Connection Type", "MongoDB Atlas")

    def section(self, name: str) -> None:
        """Open the form's section (``Standard Fields`` or ``Extra Fields``); only one is open at a time."""
        trigger = self._button(name)
        if trigger.get_attribute("aria-expanded") != "true":
            self._click(lambda: self._button(name))
        self._wait(f"//button[normalize-space(.)='{name}' and @aria-expanded='true']")
        time.sleep(0.3)  # the section's opening animation

    def type_into(self, name: str, text: str) -> None:
        """Type ``text`` into the input named ``name`` (replacing what it holds), until it holds exactly that."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.keys import Keys

        for attempt in range(3):  # a re-render while keys arrive can drop one; a person would retype it
            element = self._send(lambda: self._wait(f"//input[@name='{name}']"), Keys.CONTROL, "a")
            element = self._send(lambda: self._wait(f"//input[@name='{name}']"), Keys.DELETE)
            # At once first (fast), then one key at a time: a burst can lose keys while the form re-renders.
            for keys in [text] if attempt == 0 else text:
                try:
                    element.send_keys(keys)
                except StaleElementReferenceException:  # re-rendered: the same input, a new element
                    element = self._wait(f"//input[@name='{name}']")
                    element.send_keys(keys)
            if _settled(lambda: self._wait(f"//input[@name='{name}']").get_attribute("value")) == text:
                return
        raise AssertionError(f"the input {name!r} does not keep what was typed")

    def choose(self, label: str, value: str) -> None:
        """Pick ``value`` in the row's select as a person does (type and Enter, or open and click)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        box = _settled(lambda: self.row(label).find_element(By.XPATH, ".//*[@role='combobox']"))
        if box.tag_name == "input":  # react-select
            self._send(lambda: self.row(label).find_element(By.XPATH, ".//*[@role='combobox']"), value)
            self._wait(f"//*[contains(@id, '-option-') and normalize-space(.)='{value}']")
            self._send(lambda: self.row(label).find_element(By.XPATH, ".//*[@role='combobox']"), Keys.ENTER)
        else:  # a Chakra select: a button that opens a list of options
            self._click(lambda: self.row(label).find_element(By.XPATH, ".//*[@role='combobox']"))
            self._click(lambda: self._wait(f"//*[@role='option' and @data-value='{value}']"))
        time.sleep(0.2)

    def type_json(self, label: str, text: str) -> None:
        """Enter JSON as a person would: typed in 3.1's text box, pasted in 3.2+'s code editor (typed there, its
        auto-closing quotes and completion popups rearrange the text)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        row = self.row(label)
        editor = row.find_elements(By.XPATH, ".//*[contains(@class, 'monaco-editor')]//*[@role='textbox']")
        if not editor:
            self.type_into(row.find_element(By.XPATH, ".//input").get_attribute("name"), text)
            return
        self._click(lambda: self.row(label).find_element(By.XPATH, ".//*[contains(@class, 'view-lines')]"))
        editor[0].send_keys(Keys.CONTROL, "a")
        editor[0].send_keys(Keys.DELETE)
        self.driver.execute_cdp_cmd("Input.insertText", {"text": text})  # what a paste does
        shown = _settled(lambda: self.row(label).find_element(By.XPATH, ".//*[contains(@class, 'view-lines')]").text)
        assert json.loads(shown.replace("\u00a0", " ")) == json.loads(text), (label, shown)  # the editor re-indents it

    def switch(self, label: str, on: bool) -> None:
        from selenium.webdriver.common.by import By

        if self.switched_on(label) != on:
            self._click(lambda: self.row(label).find_element(By.XPATH, ".//*[@data-part='control']"))
        assert self.switched_on(label) == on, label

    def save_enabled(self) -> bool:
        return bool(self._button("Save").is_enabled())

    def save(self) -> None:
        self._click(lambda: self._button("Save"))
        deadline = time.monotonic() + WAIT_SECONDS
        while self._dialogs() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._dialogs():
            raise AssertionError(f"the form did not close after Save: {self.evidence('save-failed')}")

    def _dialogs(self) -> list[Any]:
        from selenium.webdriver.common.by import By

        return _settled(
            lambda: [d for d in self.driver.find_elements(By.XPATH, "//*[@role='dialog']") if d.is_displayed()]
        )

    def dialog_buttons(self) -> list[str]:
        """The names of the open form's buttons (their text, else their aria-label)."""
        from selenium.webdriver.common.by import By

        return _settled(
            lambda: [
                button.text.strip() or button.get_attribute("aria-label") or ""
                for button in self._dialogs()[-1].find_elements(By.XPATH, ".//button")
            ]
        )

    def _row_button(self, conn_id: str, name: str) -> Any:
        return self._wait(f"//tr[.//*[normalize-space(text())='{conn_id}']]//button[@aria-label='{name}']")

    def start_editing(self, conn_id: str) -> None:
        self._click(lambda: self._row_button(conn_id, "Edit Connection"))
        self._wait("//input[@name='connection_id']")
        time.sleep(0.5)  # the form fills in its saved values

    def test_from_list(self, conn_id: str) -> str:
        """Click the list's Test button for ``conn_id``; the toast it shows ("Test Connection Successful/Failed ...")."""
        from selenium.webdriver.common.by import By

        self._click(lambda: self._row_button(conn_id, "Test Connection"))
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            toasts = self.driver.find_elements(By.XPATH, "//*[@data-scope='toast' and @data-part='root']")
            texts = [toast.text for toast in toasts if toast.text.startswith("Test Connection")]
            if texts:
                return "\n".join(texts)
            time.sleep(0.2)
        raise AssertionError("the Test button showed no answer")

    def evidence(self, what: str) -> Path:
        """A screenshot of the whole window, for a failure's message."""
        path = Path(tempfile.mkdtemp(prefix="connection-form-")) / f"{what}.png"
        self.driver.save_screenshot(str(path))
        return path

    def screenshot(self, path: Path) -> None:
        """The open dialog, as a PNG at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        dialog = self._dialogs()[-1]
        tmp = Path(tempfile.mkdtemp()) / path.name
        dialog.screenshot(str(tmp))
        shutil.move(tmp, path)


def _settled(read: Any, attempts: int = 20) -> Any:
    """``read()``, again while React replaces the elements it found (a stale element reference)."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(attempts - 1):
        try:
            return read()
        except StaleElementReferenceException:
            time.sleep(0.1)
    return read()


def _patiently(act: Any, seconds: float = 10.0) -> None:
    """``act()``, again while its element is still animating in, covered or being replaced by React."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        ElementNotInteractableException,
        StaleElementReferenceException,
    )

    deadline = time.monotonic() + seconds
    while True:
        try:
            act()
            return
        except (ElementClickInterceptedException, ElementNotInteractableException, StaleElementReferenceException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
