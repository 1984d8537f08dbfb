"""Who may talk to `cb web`, and how its answers are fenced: secrets, request checks, response headers.

- **Secrets, per start**: a URL token (32 random bytes; with `--key`, the key instead), a cookie value and a
  CSRF token (32 random bytes each). `cb web` prints `http://127.0.0.1:PORT/?token=TOKEN` once. A request
  carrying the right token (any GET path) gets the cookie (`HttpOnly; SameSite=Strict; Path=/`, named for
  the port since cookies ignore ports) and a 303 to the same path without the token, so the
  token leaves the address bar and history; request logs never show query strings. Every other request
  needs the cookie.
- **Host**: on a loopback bind the Host header must name a loopback address or `localhost` with our port
  (a DNS-rebinding page's requests carry its own host name, and are refused).
- **State-changing requests** (every POST) also need: an `Origin` header equal to this server's origin (a
  page on another port of the same host is same-site, so the cookie alone is not enough), the CSRF token in
  the `X-CB-CSRF` header (a cross-origin page cannot set it without a CORS preflight, which is never
  granted), and a JSON body (`Content-Type: application/json`, which plain HTML forms cannot send).
  GET requests change nothing.
- **Binding**: loopback only, unless `--key` is given (at least 16 characters): a key the user chose, used
  as the token, for the deliberate case of a page reached over a network (an ssh tunnel to the loopback bind
  is the better way: `ssh -L 8765:127.0.0.1:8765 box`).
- **Headers on every response**: a CSP allowing only this origin's script, style and connections (no inline
  script, no images from anywhere, no frames, no form posts elsewhere), `X-Frame-Options: DENY`, `nosniff`,
  `Referrer-Policy: no-referrer`, `Cache-Control: no-store`, COOP and CORP same-origin.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

MIN_KEY_LENGTH = 16
TOKEN_PARAM = "token"
CSRF_HEADER = "X-CB-CSRF"

HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class BindRefused(ValueError):
    """A bind `cb web` will not make (a remote host without a key, a short key); one line for the user."""


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or "localhost") is on the loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, key: str | None) -> None:
    """Refuse a non-loopback bind without a key, and a key too short to guess-proof."""
    if key is not None and len(key) < MIN_KEY_LENGTH:
        raise BindRefused(f"--key must be at least {MIN_KEY_LENGTH} characters (it is the page's password)")
    if not is_loopback(host) and key is None:
        raise BindRefused(f"--host {host} is reachable from other machines: pass --key SECRET (or set CB_WEB_KEY), "
                          "or keep the default 127.0.0.1 and use an ssh tunnel (ssh -L PORT:127.0.0.1:PORT box)")


@dataclass(frozen=True)
class Verdict:
    """What to do with a request: serve it, refuse it (status, reason), or set the cookie and redirect."""

    status: int = 200
    reason: str = ""
    redirect: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.redirect


@dataclass
class Guard:
    """The per-start secrets and the checks of the module docstring, for a server at `host`:`port`."""

    host: str
    port: int
    key: str | None = None
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    session_value: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def __post_init__(self) -> None:
        if self.key is not None:
            self.token = self.key

    @property
    def cookie_name(self) -> str:
        return f"cb_web_{self.port}"

    def url(self, shown_host: str | None = None) -> str:
        """The URL to open first (it carries the token)."""
        host = shown_host or self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/?{urlencode({TOKEN_PARAM: self.token})}"

    def set_cookie(self) -> str:
        """The Set-Cookie header value given for the right token."""
        return f"{self.cookie_name}={self.session_value}; HttpOnly; SameSite=Strict; Path=/"

    def check(self, method: str, target: str, headers: Mapping[str, str]) -> Verdict:
        """The verdict on one request (method, request target, headers) before its body is read."""
        host = headers.get("Host", "")
        if not self._host_ok(host):
            return Verdict(403, f"unexpected Host header {host!r}")
        parts = urlsplit(target)
        token = parse_qs(parts.query).get(TOKEN_PARAM)
        if token is not None:
            if method != "GET" or not hmac.compare_digest(token[-1].encode(), self.token.encode()):
                return Verdict(403, "wrong token: open the URL that `cb web` printed at start")
            rest = {k: v for k, v in parse_qs(parts.query).items() if k != TOKEN_PARAM}
            return Verdict(303, redirect=(parts.path or "/") + (f"?{urlencode(rest, doseq=True)}" if rest else ""))
        if not self._cookie_ok(headers.get("Cookie", "")):
            return Verdict(403, "not signed in: open the URL that `cb web` printed at start (it holds this "
                                "start's token)")
        if method == "GET":
            return Verdict()
        if method != "POST":
            return Verdict(405, f"{method} is not allowed")
        origin = headers.get("Origin", "")
        if origin != f"http://{host}":
            return Verdict(403, f"cross-origin request refused (Origin {origin or 'missing'!s})")
        if not hmac.compare_digest(headers.get(CSRF_HEADER, "").encode(), self.csrf.encode()):
            return Verdict(403, "missing or wrong CSRF token: reload the page")
        if headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
            return Verdict(415, "requests must send JSON")
        return Verdict()

    def _host_ok(self, host: str) -> bool:
        name, _, port = host.rpartition(":")
        if not name or port != str(self.port):
            return False
        return is_loopback(name) if is_loopback(self.host) else True

    def _cookie_ok(self, header: str) -> bool:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            return False
        morsel = jar.get(self.cookie_name)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self.session_value.encode())
