"""Drive Debian's Chromium for the dashboard tests: start it offline, read its console and network
logs, run the real ``bedside web`` process, save full-page screenshots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from tests.broker import free_port, wait_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT_DIR = REPO / "docs" / "screenshots"

DESKTOP = (1280, 900)
PHONE = (390, 844)

CHROME_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--lang=en-GB",
)

T = TypeVar("T")


class BrowserMissing(RuntimeError):
    """Chromium or chromedriver is not installed where Debian puts them."""


def browser_paths() -> tuple[Path, Path]:
    """Debian's chromium and chromedriver; ``BrowserMissing`` naming the package when absent."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        raise BrowserMissing(
            f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver "
            "(scripts/system-packages.sh); the browser tests never download a browser"
        )
    return CHROMIUM, CHROMEDRIVER


def chrome_options(size: tuple[int, int] = DESKTOP) -> Options:
    """Headless Debian Chromium that reaches nothing but the pages it is sent to.

    The browser console and the DevTools network events are logged, so a test can read them.
    """
    chromium, _ = browser_paths()
    options = Options()
    options.binary_location = str(chromium)
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--window-size={size[0]},{size[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
    return options


def chrome_service(log_path: Path | None = None) -> Service:
    """The chromedriver service with its path given, so Selenium Manager is never consulted."""
    _, driver = browser_paths()
    return Service(executable_path=str(driver), log_output=str(log_path) if log_path else subprocess.DEVNULL)


def start_chrome(log_path: Path | None = None, size: tuple[int, int] = DESKTOP) -> webdriver.Chrome:
    """A new headless Chromium session. Selenium Manager is switched off (``SE_OFFLINE``) as well."""
    os.environ["SE_OFFLINE"] = "true"
    driver = webdriver.Chrome(options=chrome_options(size), service=chrome_service(log_path))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


@dataclass
class Problems:
    """What went wrong in the browser since the logs were last read."""

    console: list[str] = field(default_factory=list)
    network: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.console or self.network)

    def __str__(self) -> str:
        return "\n".join([*(f"console: {c}" for c in self.console), *(f"network: {n}" for n in self.network)])


def read_problems(driver: webdriver.Chrome) -> Problems:
    """Drain both logs: SEVERE console messages, and requests that failed or answered >= 400.

    A request the page itself cancelled (an event stream closed on navigation) is not a failure.
    """
    problems = Problems()
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE":
            problems.console.append(str(entry.get("message")))
    urls: dict[str, str] = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif method == "Network.responseReceived":
            response = params["response"]
            if int(response.get("status", 0)) >= 400:
                problems.network.append(f"{response['status']} {response['url']}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            url = urls.get(params["requestId"], params["requestId"])
            problems.network.append(f"{params.get('errorText')} {url}")
    return problems


def drain_logs(driver: webdriver.Chrome) -> None:
    """Forget what the logs hold so far."""
    driver.get_log("browser")
    driver.get_log("performance")


def wait_for(
    predicate: Callable[[], T | None], timeout_s: float = 10.0, what: str = "", poll_s: float = 0.1
) -> T:
    """Poll ``predicate`` until it returns something truthy and return it; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except WebDriverException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what or predicate}")
        time.sleep(poll_s)


def foreign_urls(driver: webdriver.Chrome) -> list[str]:
    """Every URL the page loaded or refers to that is not this server's own (data: URLs allowed).

    Loaded: the Performance API's navigation and resource entries. Referred to: ``src``,
    ``href`` and ``action`` attributes in the document, as the browser resolves them.
    """
    script = """
      const origin = location.origin;
      const loaded = performance.getEntries()
        .filter((e) => e.entryType === "navigation" || e.entryType === "resource")
        .map((e) => e.name);
      const referred = [];
      for (const el of document.querySelectorAll("[src], [href], form[action]")) {
        for (const attr of ["src", "href", "action"]) {
          if (el.hasAttribute(attr) && el[attr] && typeof el[attr] === "string") {
            referred.push(el[attr]);
          }
        }
      }
      return [...loaded, ...referred].filter(
        (u) => !(u.startsWith(origin + "/") || u === origin || u.startsWith("data:") ||
                 u.startsWith("blob:") || u.startsWith("javascript:") || u.startsWith("#")));
    """
    return list(driver.execute_script(script))


def resource_entries(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The page's Performance API resource entries (name, initiator type, response status)."""
    return list(
        driver.execute_script(
            "return performance.getEntriesByType('resource').map((e) => "
            "({name: e.name, initiatorType: e.initiatorType, status: e.responseStatus || 0}));"
        )
    )


def set_viewport(driver: webdriver.Chrome, size: tuple[int, int], mobile: bool = False) -> None:
    """Emulate a ``size`` CSS-pixel viewport (a phone: touch, device scale 2)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": size[0], "height": size[1], "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile},
    )


def full_page_png(driver: webdriver.Chrome, path: Path, max_height_px: int = 4000) -> Path:
    """Save the whole page (up to ``max_height_px`` CSS pixels tall) as a PNG at ``path``."""
    import base64

    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    content = metrics.get("cssContentSize") or metrics["contentSize"]
    viewport = metrics.get("cssLayoutViewport") or metrics["layoutViewport"]
    width = int(viewport["clientWidth"])
    height = int(min(max(content["height"], viewport["clientHeight"]), max_height_px))
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def publish_screenshots(files: Iterable[Path]) -> list[Path]:
    """Copy ``files`` to docs/screenshots when ``BEDSIDE_SCREENSHOTS=1``; the copies made."""
    if os.environ.get("BEDSIDE_SCREENSHOTS") != "1":
        return []
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(f, SCREENSHOT_DIR / f.name)) for f in files]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any BEDSIDE_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}
    env.update(extra or {})
    return env


@dataclass
class WebServer:
    """A running ``python -m service web`` process."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_web(
    db: Path,
    log_path: Path,
    *,
    host: str = "127.0.0.1",
    config: Path | None = None,
    env: dict[str, str] | None = None,
    unit_id: str = "bedside",
) -> WebServer:
    """The real dashboard server (``bedside web``) on a free port; returns once it accepts connections."""
    port = free_port()
    cmd = [sys.executable, "-m", "service", "web", "--db", str(db), "--host", host, "--port", str(port)]
    cmd += ["--unit-id", unit_id]
    if config is not None:
        cmd += ["--config", str(config)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=clean_env(env))
    server = WebServer(proc, host, port, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bedside web exited with {proc.returncode}:\n{server.log()}")
            try:
                wait_port(port, timeout_s=0.5)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
    except BaseException:
        server.stop()
        raise
    return server


def choose_theme(driver: webdriver.Chrome, theme: str) -> None:
    """Switch the page to ``theme`` (``dark`` or ``light``) with its toggle button, as a user would."""
    root = driver.find_element("css selector", "html")
    if root.get_attribute("data-theme") != theme:
        driver.find_element("id", "theme-toggle").click()
        wait_for(lambda: root.get_attribute("data-theme") == theme, what=f"the {theme} theme")
