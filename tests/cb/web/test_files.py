"""The files page: the session's open files with their versions (the ones edits must name), opened and closed
from the page or the CLI alike, and the context meter measured with the server's tokenizer.

Run: .venv/bin/python -m pytest tests/cb/web/test_files.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cb.cli import app
from tests.cb.scripted_server import ScriptedServer
from tests.cb.web.conftest import Page
from tools import file_version

pytestmark = pytest.mark.integration


def test_open_files_show_their_versions_and_the_meter_measures_them(page: Page, scripted: ScriptedServer,
                                                                     project: Path) -> None:
    (project / "lib").mkdir()
    (project / "lib" / "geo.py").write_text("PI = 3.14\n" * 30)
    page.open("/files")
    assert "No open files" in page.text("#files")
    page.find("form input[name=path]").send_keys("app.py")
    page.find("form button[type=submit]").click()
    page.until(lambda: "app.py" in page.text("#files table"))
    row = page.text("#files table tr:nth-of-type(2)")
    assert file_version((project / "app.py").read_bytes()) in row and " 2 " in f" {row} "
    assert CliRunner().invoke(app, ["open", "lib/geo.py"]).exit_code == 0  # the CLI's open shows on reload
    page.open("/files")
    assert "lib/geo.py" in page.text("#files table")
    assert "measured at the next turn" in page.text("#meter")
    page.click("button[data-post='/api/context']")
    page.until(lambda: page.find_all("#meter table.sources"), message="the meter was not measured")
    meter = page.text("#meter")
    assert "2 files" in meter and "/4096" in meter
    sources = page.text("#meter table.sources")
    assert "app.py" in sources and "lib/geo.py" in sources and "the workspace summary" in sources
    page.shot("files")
    page.click("#files button[data-post='/api/files/close']")
    page.until(lambda: "app.py" not in page.text("#files").replace("lib/geo.py", ""))
    shown = CliRunner().invoke(app, ["files"]).output
    assert "geo.py" in shown and "app.py" not in shown


def test_opening_a_missing_file_says_so(page: Page) -> None:
    page.open("/files")
    page.find("form input[name=path]").send_keys("nosuch.py")
    page.find("form button[type=submit]").click()
    page.until(lambda: "no such file" in page.status())
    assert page.find("#status").get_attribute("class") == "error"
