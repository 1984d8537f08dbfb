"""Who may use `cb web`: only the browser that opened the printed URL, only from this server's own pages.
Raw HTTP for the checks themselves, and a real browser for a hostile page on another origin (another port of
the same host: same-site, so the cookie alone would not stop it).

Run: .venv/bin/python -m pytest tests/cb/web/test_security.py -q
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cb import session as sessions
from cb.cli import app
from cb.web.security import BindRefused, check_bind
from tests.cb.web.conftest import OtherSite, Page, WebProcess

pytestmark = pytest.mark.integration


def call(web: WebProcess, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def sign_in(web: WebProcess) -> tuple[str, str]:
    """The cookie the token buys (Cookie header value) and the page's CSRF token."""
    status, headers, _ = call(web, "GET", f"/?token={web.token}")
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"].split(";")[0]
    status, _, page = call(web, "GET", "/", {"Cookie": cookie})
    assert status == 200
    found = re.search(rb'name="cb-csrf" content="([^"]+)"', page)
    assert found
    return cookie, found.group(1).decode()


def open_file(web: WebProcess, headers: dict[str, str]) -> int:
    return call(web, "POST", "/api/files/open", headers, json.dumps({"path": "app.py"}).encode())[0]


def open_files(project: Path) -> list[str]:
    return sessions.current(project).files


def test_nothing_is_served_without_the_token(web: WebProcess) -> None:
    for path in ("/", "/files", "/tabs", "/static/app.js", "/api/tabs/stream", "/nosuch"):
        status, _, body = call(web, "GET", path)
        assert status == 403, path
        assert b"open the URL that `cb web` printed" in body
    assert call(web, "GET", "/?token=" + "x" * 43)[0] == 403
    assert call(web, "GET", "/", {"Cookie": f"cb_web_{web.port}=guess"})[0] == 403
    assert call(web, "POST", "/api/clear", {"Content-Type": "application/json"}, b"{}")[0] == 403


def test_the_token_buys_an_httponly_cookie_and_never_shows_again(web: WebProcess, page: Page) -> None:
    status, headers, _ = call(web, "GET", f"/files?token={web.token}")
    assert status == 303 and headers["location"] == "/files"
    assert re.fullmatch(rf"cb_web_{web.port}=[\w-]+; HttpOnly; SameSite=Strict; Path=/", headers["set-cookie"])
    assert web.token not in headers["set-cookie"]
    cookie, _ = sign_in(web)
    status, headers, body = call(web, "GET", "/", {"Cookie": cookie})
    assert web.token.encode() not in body
    assert "default-src 'none'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer" and headers["cache-control"] == "no-store"
    # in the browser: the address bar lost the token, and scripts cannot read the cookie
    assert web.token not in page.driver.current_url
    assert page.driver.execute_script("return document.cookie") == ""
    page.open("/files")
    logged = web.stop()
    assert "GET / 303" in logged and "GET /files 200" in logged
    assert web.token not in logged and "token=" not in logged


def test_state_changing_requests_need_our_origin_the_csrf_token_and_json(web: WebProcess, project: Path) -> None:
    cookie, csrf = sign_in(web)
    ours = f"http://127.0.0.1:{web.port}"
    good = {"Cookie": cookie, "Origin": ours, "X-CB-CSRF": csrf, "Content-Type": "application/json"}
    assert open_file(web, {**good, "Origin": f"http://127.0.0.1:{web.port + 1}"}) == 403
    assert open_file(web, {**good, "Origin": "null"}) == 403
    assert open_file(web, {k: v for k, v in good.items() if k != "Origin"}) == 403
    assert open_file(web, {**good, "X-CB-CSRF": "wrong"}) == 403
    assert open_file(web, {k: v for k, v in good.items() if k != "X-CB-CSRF"}) == 403
    assert open_file(web, {**good, "Content-Type": "text/plain"}) == 415
    assert open_file(web, {**good, "Content-Type": "application/x-www-form-urlencoded"}) == 415
    assert open_file(web, {k: v for k, v in good.items() if k != "Cookie"}) == 403
    assert open_files(project) == []
    assert open_file(web, good) == 200
    assert open_files(project) == [str(project / "app.py")]


def test_a_rebinding_host_name_is_refused(web: WebProcess) -> None:
    cookie, _ = sign_in(web)
    assert call(web, "GET", "/", {"Cookie": cookie, "Host": f"attacker.example:{web.port}"})[0] == 403
    assert call(web, "GET", "/", {"Cookie": cookie, "Host": f"localhost:{web.port}"})[0] == 200


def hostile_page(target: str) -> bytes:
    """A page that tries every way a page can to act on `cb web` at `target` and to read it."""
    return f"""<!doctype html><html><body>
<form id="f" method="POST" action="{target}/api/files/open"><input name="path" value="app.py"></form>
<iframe id="frame" src="{target}/"></iframe>
<script>
window.results = {{}};
fetch("{target}/api/files/open", {{method: "POST", mode: "no-cors", credentials: "include",
      headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{path: "app.py"}})}})
  .then(() => window.results.nocors = "sent", e => window.results.nocors = "failed: " + e);
fetch("{target}/api/files/open", {{method: "POST", credentials: "include",
      headers: {{"Content-Type": "application/json", "X-CB-CSRF": "guess"}}, body: JSON.stringify({{path: "app.py"}})}})
  .then(r => window.results.json = "status " + r.status, e => window.results.json = "failed");
fetch("{target}/", {{credentials: "include"}})
  .then(r => r.text()).then(t => window.results.read = t.slice(0, 50), e => window.results.read = "failed");
setTimeout(() => document.getElementById("f").submit(), 500);
</script></body></html>""".encode()


def test_a_page_on_another_origin_can_neither_act_nor_read(page: Page, web: WebProcess, project: Path) -> None:
    with OtherSite(hostile_page(web.base)) as hostile:
        page.driver.get(hostile.url + "/")
        page.until(lambda: len(page.driver.execute_script("return Object.keys(window.results)")) == 3)
        results = page.driver.execute_script("return window.results")
        assert results["read"] == "failed"  # no CORS: the page cannot read cb web's answers
        assert results["json"] == "failed"  # the preflight for a JSON POST with a custom header is refused
        page.until(lambda: page.driver.current_url.startswith(web.base), message="the form was not submitted")
        assert "cross-origin request refused" in page.driver.find_element("tag name", "body").text
        page.shot("refused-cross-origin")
        time.sleep(0.2)
        assert open_files(project) == []  # none of the attempts opened the file
    # the framed page was refused too (frame-ancestors 'none' / X-Frame-Options), and our own page still works
    page.open("/files")
    assert page.find("#files")


def test_a_remote_bind_needs_a_key(start_web: Callable[..., WebProcess], browser: Any, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["web", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "pass --key SECRET" in result.output
    result = CliRunner().invoke(app, ["web", "--host", "::1", "--key", "short"])
    assert result.exit_code == 2 and "at least 16 characters" in result.output
    with pytest.raises(BindRefused):
        check_bind("192.0.2.1", None)
    check_bind("192.0.2.1", "a-long-secret-key-123")
    check_bind("::1", None)
    # with a key (here on loopback), the key is the token: a stable URL the user chose
    web = start_web("http://127.0.0.1:9/v1", "--key", "a-long-secret-key-123")
    assert web.token == "a-long-secret-key-123"
    assert call(web, "GET", "/?token=a-long-secret-key-123")[0] == 303
    Page(browser, web, tmp_path).sign_in()


def test_a_port_in_use_is_one_line(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["web", "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"cb: cannot listen on 127.0.0.1:{port} (Address already in use); "
                                     "pick another with --port")
