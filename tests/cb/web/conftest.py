"""Fixtures for `cb web` in a real browser: Debian's headless Chromium driven by selenium through the system
chromedriver, and a real `python -m cb web` process in the test's project dir and CB_HOME.

`browser` is one Chromium for the whole run (its start costs ~2 s), in a fresh profile; each `cb web` listens
on its own port, and cookies are named for the port, so tests do not see each other's sign-in.
`web` is a `cb web` against the scripted OpenAI-compatible server (`scripted`); `start_web(base_url)` makes
one against any server. Screenshots go to the test's tmp dir (`shot`).

Run: .venv/bin/python -m pytest tests/cb/web -q
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cb.web.bench import CHROMEDRIVER, CHROMIUM, chromium
from tests.cb.scripted_server import ScriptedServer
from tests.support.processes import stop_process

ROOT = Path(__file__).resolve().parents[3]
URL = re.compile(r"(http://127\.0\.0\.1:(\d+))/\?token=(\S+)")


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("cb web's tests need Debian's chromium and chromium-driver (make test installs them)")
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


class WebProcess:
    """`python -m cb web --port 0 --verbose` in `cwd`; `url` is the printed one (with the token), `base` the origin."""

    def __init__(self, cwd: Path, env: dict[str, str], *extra: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "cb", "web", "--port", "0", "--verbose", *extra],
                                     cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = URL.search(line)
        if not found:
            self.stop()
            raise AssertionError(f"cb web printed no URL: {line!r} {''.join(self.stderr)}")
        self.url, self.base, self.port, self.token = found.group(0), found.group(1), int(found.group(2)), found.group(3)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def stop(self) -> str:
        """Stop it; returns everything it wrote on stderr."""
        stop_process(self.proc, 10)  # type: ignore[arg-type]
        return "".join(self.stderr)


@pytest.fixture
def start_web(project: Path, cb_home: Path) -> Iterator[Callable[..., WebProcess]]:
    started: list[WebProcess] = []

    def start(base_url: str, *extra: str, **env: str) -> WebProcess:
        environment = {**os.environ, "CB_HOME": str(cb_home), "CB_BASE_URL": base_url, "PYTHONPATH": str(ROOT),
                       "CB_TEMPERATURE": "0", **env}
        started.append(WebProcess(project, environment, *extra))
        return started[-1]

    yield start
    for web in started:
        web.stop()


@pytest.fixture
def web(scripted: ScriptedServer, start_web: Callable[..., WebProcess]) -> WebProcess:
    return start_web(scripted.base_url)


class OtherSite:
    """A web server on another port of 127.0.0.1 (another origin, same site) that answers every GET with
    `body` and records the paths asked for; a context manager."""

    def __init__(self, body: bytes = b"", kind: str = "text/html") -> None:
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> OtherSite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Page:
    """The browser signed in to one `cb web`, with the waits and clicks the tests share."""

    def __init__(self, driver: Any, web: WebProcess, shots: Path) -> None:
        self.driver, self.web, self.shots = driver, web, shots

    def open(self, path: str = "/") -> Page:
        self.driver.get(self.web.base + path)
        return self

    def sign_in(self) -> Page:
        self.driver.get(self.web.url)
        assert self.driver.current_url == self.web.base + "/", self.driver.current_url  # the token left the URL
        return self

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def until(self, condition: Callable[[], Any], timeout: float = 20.0, message: str = "") -> Any:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        def check(_: Any) -> Any:
            try:
                return condition()
            except (NoSuchElementException, StaleElementReferenceException):
                return None

        return WebDriverWait(self.driver, timeout, poll_frequency=0.02).until(check, message)

    def text(self, css: str) -> str:
        return str(self.find(css).text)

    def ask(self, question: str) -> None:
        box = self.find("#ask textarea")
        box.send_keys(question)
        self.find("#send").click()

    def answered(self, timeout: float = 30.0) -> str:
        """Wait until the answer being streamed is finished (the speed line is filled); returns the line."""
        self.until(lambda: not self.find_all(".msg.streaming") and self.text("#speed"), timeout,
                   "the answer did not finish")
        return self.text("#speed")

    def click(self, css: str) -> None:
        self.find(css).click()

    def status(self) -> str:
        return self.text("#status")

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture
def page(browser: Any, web: WebProcess, tmp_path: Path) -> Page:
    return Page(browser, web, tmp_path).sign_in()
