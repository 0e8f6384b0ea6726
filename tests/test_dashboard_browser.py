"""The dashboard in a real browser: Debian's Chromium, headless, driven by Selenium through
Debian's chromedriver (never a downloaded driver or browser), against `uptax serve` running as a
child process with the demo's providers made quick and traffic flowing.

One browser and one gateway for the module; the tests run in file order and each leaves the
gateway as it found it (faults lifted, breakers back to automatic).
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from actors.config import load_config
from runtime.demo import default_config_path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    if os.environ.get("CI"):
        pytest.fail(f"CI needs {CHROMIUM} and {CHROMEDRIVER} for the dashboard's browser tests")
    pytest.skip("Debian's chromium and chromium-driver are not installed", allow_module_level=True)


ADMIN_KEY = "browser-test-admin-key"
OPERATOR = "alice"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
PRIMARY = ("openai", "anthropic")
PROVIDERS = 8  # in the demo config
WIDTH, HEIGHT = 1366, 768

T = TypeVar("T")


def _quick_demo_toml() -> str:
    """The shipped demo config with its simulated providers answering in about 20 ms."""
    text = default_config_path().read_text(encoding="utf-8")
    quick, count = re.subn(r"(?m)^latency_ms = \d+$", "latency_ms = 20", text)
    assert count >= 4, "the demo config's simulated latencies moved: update this test"
    return quick


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dashboard") / "quick-demo.toml"
    path.write_text(_quick_demo_toml(), encoding="utf-8")
    return path


class Gateway:
    """`uptax serve` as a child process, with the admin key set; it can be stopped and started
    again on the same port (the page must notice, and come back)."""

    def __init__(self, config: Path, admin_key: str | None = ADMIN_KEY) -> None:
        self.config = config
        self.admin_key = admin_key
        self.log = config.with_name(f"gateway-{'admin' if admin_key else 'open'}.log")
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, port: int = 0) -> None:
        env = {k: v for k, v in os.environ.items() if k != "UPTAX_ADMIN_KEY"}
        if self.admin_key:
            env["UPTAX_ADMIN_KEY"] = self.admin_key
        command = [sys.executable, "-m", "runtime.cli", "serve", "--config", str(self.config)]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + 60
        while not (found := re.search(r"serving on (http://\S+)", self.log.read_text("utf-8"))):
            assert self.process.poll() is None, f"uptax serve exited: {self.log.read_text('utf-8')}"
            assert time.monotonic() < deadline, "uptax serve did not start within 60 s"
            time.sleep(0.1)
        self.url = found.group(1)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM) without waiting for it."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture(scope="module")
def server(config_path: Path) -> Iterator[Gateway]:
    gateway = Gateway(config_path)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def open_server(config_path: Path) -> Iterator[Gateway]:
    """A second gateway, without an admin key."""
    gateway = Gateway(config_path, admin_key=None)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def gateway(server: Gateway) -> str:
    """The gateway's base URL (the same after a restart)."""
    return server.url


@pytest.fixture(scope="module")
def traffic(gateway: str) -> Iterator[None]:
    """Two clients asking for the router's choice, steadily, until the module ends."""
    stop = threading.Event()

    def ask() -> None:
        body = {"model": "uptax/auto", "messages": [{"role": "user", "content": "VAT on books?"}]}
        with httpx.Client(base_url=gateway, timeout=30) as client:
            while not stop.is_set():
                try:
                    client.post("/v1/chat/completions", json=body)
                except httpx.HTTPError:
                    time.sleep(0.2)  # the gateway is stopping
                stop.wait(0.05)

    threads = [threading.Thread(target=ask, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    yield
    stop.set()
    for thread in threads:
        thread.join(timeout=35)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as patch:
        # Both paths given, Selenium Manager is skipped; were it reached, it may not download.
        patch.setenv("SE_OFFLINE", "true")
        service = Service(executable_path=str(CHROMEDRIVER))
        driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 10.0) -> T:
    """`check()`'s first truthy answer, polled; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def severe(driver: WebDriver) -> list[dict[str, Any]]:
    """The console's SEVERE entries since the last call (reading the log empties it)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def css(driver: WebDriver, selector: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, selector)


def breaker_on_page(driver: WebDriver, provider: str) -> str:
    found = css(driver, f'[data-provider="{provider}"] [data-field="breaker"]')
    return found[0].get_attribute("data-state") or "" if found else ""


def level_share(driver: WebDriver, level: str) -> float:
    found = css(driver, f'#level-share li[data-level="{level}"] [data-field="share"]')
    return float(found[0].get_attribute("data-share") or 0) if found else 0.0


def breaker_in_status(gateway: str, provider: str) -> str:
    status = httpx.get(f"{gateway}/admin/status", headers=ADMIN, timeout=10).json()
    return next(p["breaker"] for p in status["providers"] if p["name"] == provider)


def admin(gateway: str, method: str, path: str, body: dict[str, Any] | None = None) -> None:
    response = httpx.request(
        method, f"{gateway}/admin/{path}", json=body, headers=ADMIN, timeout=10
    )
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def page(browser: WebDriver, gateway: str, traffic: None) -> tuple[WebDriver, list[dict[str, Any]]]:
    """The dashboard, logged in through its login form; with the console errors seen loading."""
    browser.get(f"{gateway}/dashboard")
    wait_for("the login form", lambda: browser.find_element(By.ID, "login").is_displayed())
    log_in(browser)
    wait_for(
        "the live page",
        lambda: breaker_on_page(browser, "openai") and connection(browser) == "live",
    )
    return browser, severe(browser)


def log_in(driver: WebDriver) -> None:
    driver.find_element(By.ID, "login-key").send_keys(ADMIN_KEY)
    operator = driver.find_element(By.ID, "login-operator")
    operator.clear()
    operator.send_keys(OPERATOR)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()


def test_the_page_loads_without_console_errors(
    page: tuple[WebDriver, list[dict[str, Any]]],
) -> None:
    driver, seen = page
    # Before logging in, the state answered 401 (which showed the login form): Chromium logs
    # every failed load as SEVERE. Nothing else may be.
    assert [
        e for e in seen if "/dashboard/api/state" not in e["message"] or "401" not in e["message"]
    ] == []
    assert driver.find_element(By.ID, "operator").text == f"operator: {OPERATOR}"
    driver.refresh()  # the session cookie now carries the page straight in
    wait_for(
        "the live badge after a reload",
        lambda: driver.find_element(By.ID, "connection").get_attribute("data-state") == "live",
    )
    wait_for("samples on the page", lambda: breaker_on_page(driver, "openai") == "closed")
    assert severe(driver) == []


def test_it_lists_every_configured_provider(
    page: tuple[WebDriver, list[dict[str, Any]]], config_path: Path
) -> None:
    driver, _ = page
    config = load_config(config_path)
    rows = css(driver, "#provider-rows tr[data-provider]")
    assert [row.get_attribute("data-provider") for row in rows] == [
        name for level in config.levels for name in level.providers
    ]
    for level in config.levels:
        for name in level.providers:
            row = css(driver, f'tr[data-provider="{name}"]')[0]
            assert row.get_attribute("data-level") == level.name
            assert row.find_element(By.CSS_SELECTOR, '[data-field="status"]').get_attribute(
                "data-state"
            ) in ("healthy", "degraded", "critical", "offline")


def test_without_an_admin_key_the_page_is_read_only(
    page: tuple[WebDriver, list[dict[str, Any]]], open_server: Gateway, gateway: str
) -> None:
    driver, _ = page
    try:
        driver.get(f"{open_server.url}/dashboard")
        wait_for("the live page", lambda: connection(driver) == "live")
        assert not driver.find_element(By.ID, "login").is_displayed()
        assert len(css(driver, "#provider-rows tr[data-provider]")) == PROVIDERS
        assert css(driver, "[data-action]") == []
        assert not driver.find_element(By.ID, "logout").is_displayed()
        assert severe(driver) == []
    finally:
        # Stopping takes a while (the browser keeps its connections): let it happen meanwhile.
        open_server.terminate()
        driver.get(f"{gateway}/dashboard")
        wait_for("the admin gateway's page again", lambda: connection(driver) == "live")


def test_a_fault_shows_the_breaker_open_and_traffic_moving_to_the_secondary_level(
    page: tuple[WebDriver, list[dict[str, Any]]], gateway: str
) -> None:
    driver, _ = page
    wait_for("the primary level serving", lambda: level_share(driver, "primary") > 0.5)
    try:
        for provider in PRIMARY:
            admin(gateway, "PUT", f"faults/{provider}", {"kind": "outage", "status": 503})
        deadline = time.monotonic() + 3.0
        wait_for(
            "openai's breaker open on the page",
            lambda: breaker_on_page(driver, "openai") == "open",
            timeout=3.0,
        )
        wait_for(
            "traffic served by the secondary level",
            lambda: level_share(driver, "secondary") > 0,
            timeout=deadline - time.monotonic(),
        )
        wait_for(
            "the secondary level serving most traffic",
            lambda: level_share(driver, "secondary") > level_share(driver, "primary"),
            timeout=12,
        )
        # The explainer is asked while the open period has time left: one that ends first
        # leaves openai half-open, a candidate for its probe rather than an exclusion (on a
        # busy machine the waits above can outlast the first period; the outage stays on, so
        # the next trip opens it again, for twice as long).
        wait_for(
            "a countdown to half-open with 4 s or more left",
            lambda: (seconds_to_half_open(driver) or 0) >= 4,
            timeout=30,
        )
        explain_shows_the_exclusion(driver)
        screenshot(driver)
        assert severe(driver) == []
    finally:
        for provider in PRIMARY:
            admin(gateway, "DELETE", f"faults/{provider}")
            admin(gateway, "POST", f"breakers/{provider}", {"action": "reset"})


def seconds_to_half_open(driver: WebDriver) -> int | None:
    """openai's countdown on the page (\"half-open in 7 s\", \"half-open in 1 min 5 s\"), in
    seconds; None when it shows none."""
    text = driver.find_element(
        By.CSS_SELECTOR, '[data-provider="openai"] [data-field="countdown"]'
    ).text
    found = re.fullmatch(r"half-open in (?:(\d+) min )?(\d+) s", text.strip())
    if found is None:
        return None
    return int(found[1] or 0) * 60 + int(found[2])


def explain_shows_the_exclusion(driver: WebDriver) -> None:
    driver.find_element(By.CSS_SELECTOR, "#explain-form button[type=submit]").click()
    excluded = wait_for(
        "openai excluded in the route explainer",
        lambda: css(driver, '[data-plan-level="primary"] [data-exclusion="openai"]'),
    )
    assert "breaker" in excluded[0].text


def screenshot(driver: WebDriver) -> None:
    """The whole page as laid out at 1366 px wide, as a test artifact."""
    folder = Path(os.environ.get("UPTAX_TEST_ARTIFACTS") or "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path = folder / "dashboard.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.read_bytes().startswith(b"\x89PNG")


def test_an_operator_action_from_the_page_takes_effect(
    page: tuple[WebDriver, list[dict[str, Any]]], gateway: str
) -> None:
    driver, _ = page
    try:
        choose(driver, "mistral", "open")
        driver.find_element(By.CSS_SELECTOR, "#confirm-dialog [data-cancel]").click()
        choose(driver, "gemini", "open")
        driver.find_element(By.CSS_SELECTOR, "#confirm-dialog [data-confirm]").click()
        wait_for(
            "gemini forced open in /admin/status",
            lambda: breaker_in_status(gateway, "gemini") == "forced_open",
            timeout=5,
        )
        wait_for(
            "gemini forced open on the page",
            lambda: breaker_on_page(driver, "gemini") == "forced_open",
            timeout=3,
        )
        logged = wait_for(
            "the action in the event log",
            lambda: [
                item
                for item in css(driver, '#event-log [data-event="operator_action"]')
                if "gemini" in item.text and OPERATOR in item.text
            ],
        )
        assert logged
        assert breaker_in_status(gateway, "mistral") == "closed"  # cancelled: nothing done
        assert severe(driver) == []
    finally:
        admin(gateway, "POST", "breakers/gemini", {"action": "auto"})


def choose(driver: WebDriver, provider: str, action: str) -> None:
    """Open `provider`'s actions menu, pick `action`, and wait for the confirmation."""
    row = f'[data-provider="{provider}"]'
    menu = driver.find_element(By.CSS_SELECTOR, f"{row} details.menu > summary")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", menu)
    menu.click()
    driver.find_element(By.CSS_SELECTOR, f'{row} [data-action="{action}"]').click()
    dialog = driver.find_element(By.ID, "confirm-dialog")
    wait_for("the confirmation", lambda: dialog.get_attribute("open") is not None)
    assert provider in driver.find_element(By.ID, "confirm-text").text


def test_the_page_comes_back_after_the_gateway_dies_and_starts_again(
    page: tuple[WebDriver, list[dict[str, Any]]], server: Gateway
) -> None:
    driver, _ = page
    started = driver.find_element(By.ID, "instance").text
    server.kill()  # a crash: every connection drops at once
    wait_for("the reconnecting badge", lambda: connection(driver) == "reconnecting")
    server.start(server.port)
    # The new process knows nothing of the old session: the page asks to log in again.
    wait_for("the login form", lambda: driver.find_element(By.ID, "login").is_displayed())
    assert "log in again" in driver.find_element(By.ID, "login-error").text
    log_in(driver)
    wait_for("the live badge", lambda: connection(driver) == "live")
    assert driver.find_element(By.ID, "instance").text != started  # a new instance, reloaded
    wait_for("samples of the new instance", lambda: breaker_on_page(driver, "openai") == "closed")
    assert [e for e in severe(driver) if not expected_while_restarting(e)] == []


def connection(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "connection").get_attribute("data-state") or ""


def expected_while_restarting(entry: dict[str, Any]) -> bool:
    """Chromium logs the stream cut off, its failed reconnections and the 401s of a session the
    new process does not know."""
    message = entry["message"]
    signs = ("ERR_INCOMPLETE_CHUNKED_ENCODING", "ERR_CONNECTION_REFUSED", "status of 401")
    return "/dashboard/api/" in message and any(sign in message for sign in signs)
