"""Proposed edits on the chat page, clicked in a real browser: the same plan / apply / undo code as the CLI,
so a batch writes all of its files or none, a stale file is refused, a second click does nothing, and the
undo journal is the one `cb undo` uses.

Run: .venv/bin/python -m pytest tests/cb/web/test_edits.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cb import paths
from cb.cli import app
from tests.cb.scripted_server import Reply, ScriptedServer
from tests.cb.web.conftest import Page
from tools import Journal, file_version

pytestmark = pytest.mark.integration

ORIGINAL = "def area(r):\n    return 3.14 * r * r\n"
EDITED = "import math\ndef area(r):\n    return math.pi * r * r\n"


def pi_answer(project: Path, name: str = "app.py") -> str:
    version = file_version((project / name).read_bytes())
    return (f"Use math.pi.\n\n<insert path=\"{name}\" version=\"{version}\" after=\"0\">\nimport math\n</insert>\n\n"
            f"<edit path=\"{name}\" version=\"{version}\" line=\"2\">\n    return math.pi * r * r\n</edit>\n")


def propose(page: Page, scripted: ScriptedServer, answer: str, *files: str) -> None:
    assert CliRunner().invoke(app, ["open", *(files or ("app.py",))]).exit_code == 0  # the CLI's session
    scripted.enqueue(Reply([answer]))
    page.ask("make area exact")
    page.answered()
    page.until(lambda: page.find(".batch"), message="no proposed changes shown")


def badge(page: Page) -> str:
    return page.text(".batch h3 .badge")


def journal_entries() -> int:
    return len(Journal(paths.undo_dir()).entries())


def test_an_edit_applied_from_the_page_is_written_once_and_undone(page: Page, scripted: ScriptedServer,
                                                                  project: Path) -> None:
    propose(page, scripted, pi_answer(project))
    diff = page.text(".batch pre.diff")
    assert "+import math" in diff and "-    return 3.14 * r * r" in diff and "+    return math.pi * r * r" in diff
    page.shot("edits-proposed")
    # two clicks before the first answer comes back: one batch is written, once
    page.driver.execute_script("const b = document.querySelector('.batch button.apply'); b.click(); b.click();")
    page.until(lambda: badge(page) == "applied")
    assert (project / "app.py").read_text() == EDITED
    assert journal_entries() == 1
    assert "applied: app.py" in page.text(".batch .outcome")
    page.shot("edits-applied")
    # a later click on the same decision (a stale page, a replayed request) does nothing either
    replay = page.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const b = document.querySelector('.batch');
        fetch('/api/batch/' + b.id.slice(6) + '/decide', {method: 'POST', headers: {'Content-Type':
              'application/json', 'X-CB-CSRF': document.querySelector('meta[name=cb-csrf]').content},
              body: JSON.stringify({card: 0, decision: 'apply'})}).then(r => r.json()).then(done);""")
    assert "applied" in replay["html"]
    assert (project / "app.py").read_text() == EDITED and journal_entries() == 1
    # the page's Undo takes it back, byte for byte, through the journal `cb undo` uses
    page.click(".batch button[data-post$='/undo']")
    page.until(lambda: badge(page) == "undone")
    assert (project / "app.py").read_text() == ORIGINAL
    assert CliRunner().invoke(app, ["undo"]).exit_code == 4  # nothing left for the CLI to undo


def test_a_file_changed_after_the_model_saw_it_is_refused(page: Page, scripted: ScriptedServer,
                                                          project: Path) -> None:
    propose(page, scripted, pi_answer(project))
    (project / "app.py").write_text(ORIGINAL + "# saved from an editor meanwhile\n")
    page.click(".batch button.apply")
    page.until(lambda: badge(page) == "refused")
    outcome = page.text(".batch .outcome")
    assert "app.py: changed since the model saw it" in outcome and "nothing was applied" in outcome
    assert (project / "app.py").read_text() == ORIGINAL + "# saved from an editor meanwhile\n"
    assert journal_entries() == 0
    assert not page.find_all(".batch button.apply")
    page.shot("edits-stale")


def test_a_batch_writes_all_its_files_or_none(page: Page, scripted: ScriptedServer, project: Path) -> None:
    (project / "geo.py").write_text(ORIGINAL)
    propose(page, scripted, pi_answer(project) + pi_answer(project, "geo.py"), "app.py", "geo.py")
    assert len(page.find_all(".batch .card")) == 2
    page.click(".batch .card:nth-of-type(1) button.apply")
    page.until(lambda: page.find(".batch .card:nth-of-type(1) .card-head .badge").text == "apply")
    assert badge(page) == "open" and (project / "app.py").read_text() == ORIGINAL  # waits for the other file
    (project / "geo.py").write_text(ORIGINAL + "\n")  # goes stale before it is decided
    page.click(".batch .card:nth-of-type(2) button.apply")
    page.until(lambda: badge(page) == "refused")
    assert (project / "app.py").read_text() == ORIGINAL  # the fresh file was not written either
    assert "geo.py: changed since the model saw it" in page.text(".batch .outcome")


def test_declining_one_file_applies_the_others(page: Page, scripted: ScriptedServer, project: Path) -> None:
    (project / "geo.py").write_text(ORIGINAL)
    propose(page, scripted, pi_answer(project) + pi_answer(project, "geo.py"), "app.py", "geo.py")
    page.click(".batch .card:nth-of-type(2) button.decline")
    page.until(lambda: page.find(".batch .card:nth-of-type(2) .card-head .badge").text == "decline")
    page.click(".batch .card:nth-of-type(1) button.apply")
    page.until(lambda: badge(page) == "applied")
    assert (project / "app.py").read_text() == EDITED and (project / "geo.py").read_text() == ORIGINAL


def test_an_edited_proposal_is_replanned_and_applied(page: Page, scripted: ScriptedServer, project: Path) -> None:
    propose(page, scripted, pi_answer(project))
    page.click(".batch button[data-reveal]")
    box = page.find(".batch form.edit textarea")
    assert box.is_displayed() and "<edit path=\"app.py\"" in box.get_attribute("value")
    page.driver.execute_script("arguments[0].value = arguments[0].value.replace('math.pi', '3.14159')", box)
    page.shot("edits-editing")
    page.find(".batch form.edit button[type=submit]").click()
    page.until(lambda: "+    return 3.14159 * r * r" in page.text(".batch pre.diff"))
    page.click(".batch button.apply")
    page.until(lambda: badge(page) == "applied")
    assert (project / "app.py").read_text() == "import math\ndef area(r):\n    return 3.14159 * r * r\n"


def test_a_broken_edit_is_not_used_and_the_proposal_stays(page: Page, scripted: ScriptedServer,
                                                          project: Path) -> None:
    propose(page, scripted, pi_answer(project))
    page.click(".batch button[data-reveal]")
    box = page.find(".batch form.edit textarea")
    page.driver.execute_script("arguments[0].value = 'no blocks here'", box)
    page.find(".batch form.edit button[type=submit]").click()
    page.until(lambda: "not used" in page.text(".batch .note"))
    assert "no edit blocks left" in page.text(".batch .note")
    assert "+    return math.pi * r * r" in page.text(".batch pre.diff")


def test_a_change_with_a_warning_needs_a_second_yes(page: Page, scripted: ScriptedServer, project: Path) -> None:
    (project / "long.py").write_text("".join(f"x{i} = {i}\n" for i in range(20)))
    version = file_version((project / "long.py").read_bytes())
    propose(page, scripted, f'<replace path="long.py" version="{version}" start="1" end="18">\n</replace>\n', "long.py")
    page.click(".batch button.apply")
    page.until(lambda: "Apply anyway?" in page.text(".batch .note"))
    assert badge(page) == "open" and len((project / "long.py").read_text().splitlines()) == 20
    assert page.text(".batch button.apply") == "Apply anyway"
    page.click(".batch button.apply")
    page.until(lambda: badge(page) == "applied")
    assert (project / "long.py").read_text() == "x18 = 18\nx19 = 19\n"


def test_a_malformed_block_refuses_the_batch(page: Page, scripted: ScriptedServer, project: Path) -> None:
    version = file_version((project / "app.py").read_bytes())
    malformed = f'<edit path="app.py" version="{version}">\nx\n</edit>\n'
    scripted.enqueue(Reply([malformed]))  # the first answer: the repair round gets the same one back below
    propose(page, scripted, malformed)
    assert badge(page) == "refused" and "malformed edit" in page.text(".batch .error")
    assert not page.find_all(".batch button.apply")
