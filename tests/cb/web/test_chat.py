"""The chat page in a real browser: answers stream in as rendered Markdown, the speed line follows, untrusted
output stays text, and the turn lands in the same session the CLI reads.

Run: .venv/bin/python -m pytest tests/cb/web/test_chat.py -q
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cb.cli import app
from tests.cb.scripted_server import Reply, ScriptedServer
from tests.cb.web.conftest import OtherSite, Page, WebProcess

pytestmark = pytest.mark.integration


def test_an_answer_streams_in_as_it_is_generated(page: Page, scripted: ScriptedServer, project: Path) -> None:
    pieces = ["Use **math.pi**:", "\n\n```python\n", "import math\n", "area = math.pi * r * r\n", "```\n",
              "That is all."]
    scripted.enqueue(Reply(pieces, delay=0.4))
    page.ask("how do I make area exact?")
    page.until(lambda: "math.pi" in page.text(".msg.assistant.streaming .md"), message="the first piece never showed")
    partial = page.text(".msg.assistant .md")
    assert "That is all." not in partial  # shown while the rest was still being generated
    page.shot("chat-streaming")
    speed = page.answered()
    assert page.text(".msg.assistant .md").endswith("That is all.")
    assert page.find(".msg.assistant .md strong").text == "math.pi"
    code = page.find(".msg.assistant .md pre code.language-python")
    assert code.find_elements("css selector", "span.kn")  # `import` highlighted by Pygments
    for part in ("10 in", "6 out", "4 cached", "TTFT", "tok/s", "context"):
        assert part in speed, speed
    assert page.find("#meter meter").get_attribute("max") == "4096"
    page.shot("chat")
    # the same session the CLI sees: `cb session show` lists the turn
    shown = CliRunner().invoke(app, ["session", "show"])
    assert "how do I make area exact?" in shown.output and "That is all." in shown.output
    # and a reload renders the conversation on the server, the same way
    page.open("/")
    assert page.text(".msg.user pre") == "how do I make area exact?"
    assert page.find(".msg.assistant .md strong").text == "math.pi"


def test_scripts_escape_sequences_and_images_in_an_answer_stay_inert_text(page: Page,
                                                                          scripted: ScriptedServer) -> None:
    with OtherSite(kind="image/gif") as tracker:
        evil = ("<script>window.pwned = 1</script> <img src=x onerror=\"window.pwned = 2\">\n\n"
                "\x1b]52;c;aGk=\x07 and \x1b[2J\x1b[1;1H cleared?\n\n"
                f"![tracking pixel]({tracker.url}/pixel.gif) [click me](javascript:window.pwned=3) "
                f"[docs]({tracker.url}/docs)\n\n<b>bold?</b>")
        scripted.enqueue(Reply([evil[:30], evil[30:]]))
        page.ask("show me something nasty")
        page.answered()
        md = page.find(".msg.assistant .md")
        shown = md.text
        assert "<script>window.pwned = 1</script>" in shown and '<img src=x onerror="window.pwned = 2">' in shown
        assert "␛]52;c;aGk=␇" in shown and "␛[2J␛[1;1H" in shown
        assert "<b>bold?</b>" in shown
        assert not md.find_elements("css selector", "script, img, a, b, iframe")
        assert f"({tracker.url}/docs)" in shown  # a link shows its address, as text
        assert page.driver.execute_script("return window.pwned === undefined")
        page.shot("chat-untrusted")
        page.open("/")  # rendered by the server from the session, the same way
        md = page.find(".msg.assistant .md")
        assert "<script>window.pwned = 1</script>" in md.text
        assert not md.find_elements("css selector", "script, img, a")
        assert page.driver.execute_script("return window.pwned === undefined")
        time.sleep(0.3)
        assert tracker.hits == []  # the image was never fetched


def test_a_server_error_is_one_line_and_nothing_is_recorded(page: Page, scripted: ScriptedServer) -> None:
    scripted.enqueue(Reply(status=503, error="overloaded", headers={"Retry-After": "2"}))
    page.ask("anyone there?")
    page.until(lambda: "busy" in page.status(), message="no error shown")
    assert "the server is busy (503: overloaded); retry in 2s" in page.status()
    assert not page.find_all(".msg.assistant")
    page.open("/")
    assert not page.find_all(".msg")


def test_stop_cancels_the_answer_and_the_server_stops_streaming(page: Page, scripted: ScriptedServer) -> None:
    scripted.enqueue(Reply([f"word{i} " for i in range(200)], delay=0.05))
    page.ask("count slowly")
    page.until(lambda: "word3" in page.text(".msg.assistant .md"))
    page.click("#stop")
    page.until(lambda: "stopped" in page.status())
    page.until(lambda: scripted.disconnects == 1, message="the model server kept streaming")
    page.open("/")
    assert not page.find_all(".msg")  # a cancelled turn is not recorded, as with Ctrl-C


@pytest.mark.slow
def test_a_turn_streams_from_a_real_ulm_serve(browser: Any, ulm_server: str,
                                              start_web: Callable[..., WebProcess], tmp_path: Path) -> None:
    web = start_web(ulm_server, CB_MAX_TOKENS="12")
    page = Page(browser, web, tmp_path).sign_in()
    seen: list[str] = []
    page.ask("Say hello.")
    page.until(lambda: seen.append(page.text(".msg.assistant .md")) or page.text("#speed"), timeout=120)
    speed = page.text("#speed")
    assert "TTFT" in speed and "out" in speed and "context" in speed and "/2048" in speed
    assert page.text(".msg.assistant .md")
    assert len({s for s in seen if s}) >= 2  # the text grew while it streamed (tiny model, 20 ms a token)
    page.shot("chat-ulm-serve")


def test_sessions_switch_and_clear_like_the_cli(page: Page, scripted: ScriptedServer, project: Path) -> None:
    scripted.enqueue(Reply(["first answer"]))
    page.ask("first question")
    page.answered()
    first = page.find("#session").get_attribute("value")
    page.click("button[data-post='/api/session/new']")
    page.until(lambda: page.find("#session").get_attribute("value") != first)
    assert not page.find_all(".msg")
    assert first not in CliRunner().invoke(app, ["session", "show"]).output  # the CLI follows: a new current one
    page.driver.execute_script("const s = document.getElementById('session'); s.value = arguments[0];"
                               "s.dispatchEvent(new Event('change', {bubbles: true}))", first)
    page.until(lambda: page.find_all(".msg.assistant") and page.find("#session").get_attribute("value") == first)
    assert page.text(".msg.assistant .md") == "first answer"
    page.click("button[data-post='/api/clear']")
    page.until(lambda: not page.find_all(".msg"))
    assert "first answer" not in CliRunner().invoke(app, ["session", "show"]).output
