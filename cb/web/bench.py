"""How fast `cb web`'s pages load in a real browser, beside the same bytes served as static files.

    python -m cb.web.bench [--runs 15] [--messages 40]

It makes a throw-away project and CB_HOME with a session of `messages` messages (Markdown answers with code
blocks, so the chat page renders and highlights them all), starts `python -m cb web` there, signs Debian's
headless Chromium in, and loads each page `runs` times, reading the Navigation Timing of each load:
`response` (request sent until the last byte of the HTML: the server's share) and `load` (navigation start
until the load event: HTML, script, style, layout). The baseline is the very same HTML, script and style
saved to disk and served by the stdlib's static http.server in the same run, so the difference is what cb
web itself costs (rendering the session, the checks). Medians and maxima are printed; nothing asserts a speed.

Needs chromium, chromium-driver (Debian) and selenium (`pip install 'cb[dev]'`).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900")
PAGES = ("/", "/files", "/tabs")
TIMING = """const t = performance.getEntriesByType("navigation")[0];
return [t.responseEnd - t.requestStart, t.loadEventEnd - t.startTime];"""

ANSWER = """Here is a version with `math.pi`:

```python
import math


def area(r: float) -> float:
    \"\"\"The area of a circle of radius r.\"\"\"
    return math.pi * r * r
```

It is **exact** to float precision; see the [docs](https://docs.python.org/3/library/math.html).
"""


def chromium(profile: Path) -> Any:
    """Debian's headless Chromium (flags fit for root) in the fresh profile dir `profile`, via chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _session(home: Path, project: Path, messages: int) -> None:
    os.environ["CB_HOME"] = str(home)
    from cb import session

    current = session.current(project)
    (project / "app.py").write_text("def area(r):\n    return 3.14 * r * r\n", encoding="utf-8")
    current.open_files([str(project / "app.py")])
    for i in range(messages // 2):
        current.append("user", f"question {i}: how do I make area() exact?")
        current.append("assistant", ANSWER)


def _loads(driver: Any, base: str, path: str, runs: int) -> tuple[list[float], list[float]]:
    responses, loads = [], []
    for _ in range(runs + 1):  # the first load warms caches and is not counted
        driver.get(base + path)
        response, load = driver.execute_script(TIMING)
        responses.append(response)
        loads.append(load)
    return responses[1:], loads[1:]


def _mirror(base: str, cookie: str, folder: Path) -> http.server.ThreadingHTTPServer:
    """The pages' HTML and the static files, saved as they were served, behind a static file server."""
    for path in (*PAGES, "/static/app.js", "/static/app.css"):
        request = urllib.request.Request(base + path, headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=30) as reply:
            data = reply.read()
        target = folder / path.strip("/") if path.startswith("/static") else folder / path.strip("/") / "index.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cb.web.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--messages", type=int, default=40)
    args = parser.parse_args(argv)
    try:
        import selenium  # noqa: F401
    except ImportError:
        sys.exit("the page-load bench needs selenium: pip install 'cb[dev]' (and apt-get install chromium "
                 "chromium-driver)")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        sys.exit("the page-load bench needs Debian's chromium and chromium-driver: apt-get install chromium "
                 "chromium-driver")
    with tempfile.TemporaryDirectory(prefix="cb-web-bench-") as tmp:
        root = Path(tmp)
        home, project = root / "home", root / "project"
        project.mkdir()
        _session(home, project, args.messages)
        env = {**os.environ, "CB_HOME": str(home), "CB_BASE_URL": "http://127.0.0.1:9/v1"}
        proc = subprocess.Popen([sys.executable, "-m", "cb", "web", "--port", "0"], cwd=project, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        driver = None
        mirror = None
        try:
            assert proc.stdout is not None
            found = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=\S+", proc.stdout.readline())
            if not found:
                sys.exit("cb web did not start")
            base = found.group(1)
            driver = chromium(root / "profile")
            driver.get(found.group(0))
            cookie = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
            mirror = _mirror(base, cookie, root / "static-copy")
            static = f"http://127.0.0.1:{mirror.server_address[1]}"
            print(f"page load in headless Chromium, {args.runs} loads each, a session of {args.messages} messages "
                  "(ms: median / max)")
            print(f"{'page':8} {'cb web response':>16} {'cb web load':>12} {'static response':>16} "
                  f"{'static load':>12}")
            for path in PAGES:
                ours = _loads(driver, base, path, args.runs)
                theirs = _loads(driver, static, path.rstrip("/") + "/", args.runs)
                cells = [f"{statistics.median(v):.1f} / {max(v):.1f}" for v in (*ours, *theirs)]
                print(f"{path:8} {cells[0]:>16} {cells[1]:>12} {cells[2]:>16} {cells[3]:>12}")
        finally:
            if driver is not None:
                driver.quit()
            if mirror is not None:
                mirror.shutdown()
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
