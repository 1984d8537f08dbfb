"""The tabs page against a real agentshell daemon: output shows up live, and a command the model proposes runs
only after the confirm step.

Run: .venv/bin/python -m pytest tests/cb/web/test_tabs.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agentshell.conftest import RunningDaemon, wait_until
from tests.cb.scripted_server import Reply, ScriptedServer
from tests.cb.web.conftest import Page

pytestmark = pytest.mark.integration


def test_a_tabs_output_appears_on_the_page_as_it_is_written(page: Page, daemon: RunningDaemon) -> None:
    with daemon.client() as sh:
        sh.new(["sh", "-c", "stty -echo; exec cat"], name="echoer")
        page.open("/tabs")
        page.until(lambda: "echoer" in page.text("#tabs"), message="the tab is not listed")
        assert "running" in page.text("#tab-1 .badge")
        sh.send("echoer", "hello from the test", ["Enter"])
        page.until(lambda: "hello from the test" in page.text("#tab-1 pre.out"), message="the output never showed")
        sh.send("echoer", "\x1b]52;c;aGk=\x07second line", ["Enter"])
        page.until(lambda: "second line" in page.text("#tab-1 pre.out"))
        assert not page.find_all("#tabs script")
        page.shot("tabs")
        page.click("#tab-1 button.decline")  # Kill
        page.until(lambda: "killed" in page.text("#tab-1 .badge") or "exited" in page.text("#tab-1 .badge"))


def test_a_tab_started_from_the_page_runs_in_the_project(page: Page, daemon: RunningDaemon, project: Path) -> None:
    page.open("/tabs")
    page.find("form input[name=name]").send_keys("job")
    page.find("form input[name=command]").send_keys("pwd; echo $((40+2))")
    page.find("form button[type=submit]").click()
    page.until(lambda: "42" in page.text("#tab-1 pre.out"), message="the command's output never showed")
    assert str(project) in page.text("#tab-1 pre.out")
    assert "tab 1:job started" in page.status()


def test_a_proposed_command_runs_only_after_the_confirm_step(page: Page, scripted: ScriptedServer,
                                                             daemon: RunningDaemon) -> None:
    scripted.enqueue(Reply(['Run the tests:\n\n<run tab="job">echo ran-$((6*7))</run>\n']))
    page.ask("run it")
    page.answered()
    page.until(lambda: page.find(".batch .run"))
    assert "echo ran-$((6*7))" in page.text(".batch .run code.command")
    # the page itself refuses to run it without the confirmation
    refused = page.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/api/batch/' + document.querySelector('.batch').id.slice(6) + '/run', {method: 'POST',
              headers: {'Content-Type': 'application/json',
                        'X-CB-CSRF': document.querySelector('meta[name=cb-csrf]').content},
              body: JSON.stringify({run: 0})}).then(r => r.json().then(j => done([r.status, j])));""")
    assert refused == [400, {"error": "a proposed command runs only after it is confirmed"}]
    page.click(".batch .run button[data-reveal]")  # Run…
    confirm = page.find(".batch .run .confirm")
    assert confirm.is_displayed() and "echo ran-$((6*7))" in confirm.text
    page.shot("tabs-confirm")
    with daemon.client() as sh:
        assert sh.ls() == []  # asked, not yet run
        page.click(".batch .run .confirm button.apply")  # Yes, run it
        page.until(lambda: page.text(".batch .run .badge") == "sent")
        wait_until(lambda: "ran-42" in sh.tail("job", lines=5).text)
    assert not page.find_all(".batch .run .confirm")  # sent once: no button left to send it again
    page.open("/tabs")
    page.until(lambda: "ran-42" in page.text("#tabs"))


def test_a_declined_command_never_runs(page: Page, scripted: ScriptedServer, daemon: RunningDaemon) -> None:
    scripted.enqueue(Reply(['<run tab="job">touch should-not-exist</run>\n']))
    page.ask("run it")
    page.answered()
    page.click(".batch .run button.decline")  # Don't run
    page.until(lambda: page.text(".batch .run .badge") == "declined")
    assert not page.find_all(".batch .run button[data-reveal]")
    with daemon.client() as sh:
        assert sh.ls() == []
