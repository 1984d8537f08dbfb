"""The chat REPL on prompt-toolkit: persistent history, multiline input, slash commands with completion.

Keys: Enter sends; Alt-Enter (Esc Enter) inserts a newline; Ctrl-X Ctrl-E edits the input in $EDITOR;
Ctrl-C clears the input, or cancels the answer being generated (the session stays); Ctrl-D quits.
After each answer one dim line gives tokens in/out, cached tokens, time to first token and tokens/s; the
right-hand prompt is the context meter (the open files, the project's instruction files such as AGENTS.md by
name, and the prompt tokens of the last turn against the server's context length).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings

from cb import paths
from cb import session as sessions
from cb.chat import Chat, describe_error, stats_line
from cb.config import Settings
from cb.render import Out

COMMANDS: dict[str, str] = {
    "/open": "PATH...      add files to the context",
    "/close": "PATH...|--all  remove files from the context",
    "/files": "            list the open files",
    "/clear": "            forget the conversation (open files stay)",
    "/undo": "             undo the last applied edit batch",
    "/copy": "[code]        copy the last answer (or its last code block) to your clipboard",
    "/tabs": "             list agentshell tabs (their tails are in the context)",
    "/edit": "REQUEST      ask for a change: the answer must propose an edit",
    "/run": "TAB COMMAND   run a command in an agentshell tab (created if missing)",
    "/model": "[NAME]       show or switch the model",
    "/session": "[list|new [NAME]|use ID]  show or switch sessions",
    "/help": "             this list",
    "/exit": "             quit (or Ctrl-D)",
}


class SlashCompleter(Completer):
    """Completes slash command names, paths after /open, open files after /close, sessions after /session."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/"):
            return
        if " " not in text:
            for name in COMMANDS:
                if name.startswith(text):
                    yield Completion(name, start_position=-len(text), display_meta=COMMANDS[name].strip())
            return
        command, _, rest = text.partition(" ")
        word = rest.rsplit(" ", 1)[-1]
        if command == "/open":
            yield from self.paths.get_completions(Document(word, len(word)), event)
        elif command == "/close":
            for p in [self.chat.session.display(f) for f in self.chat.session.files] + ["--all"]:
                if p.startswith(word):
                    yield Completion(p, start_position=-len(word))
        elif command == "/session":
            options = ["list", "new", "use"] if rest.count(" ") == 0 else \
                [s.id for s in sessions.list_all(Path(self.chat.session.project))]
            for o in options:
                if o.startswith(word):
                    yield Completion(o, start_position=-len(word))


def _keys() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    return kb


class Repl:
    """One interactive chat; `run()` loops until Ctrl-D or /exit."""

    def __init__(self, settings: Settings, session: sessions.Session) -> None:
        self.out = Out(code_theme=settings.code_theme)
        self.chat = Chat(settings, session, self.out)
        self.prompt: PromptSession[str] | None = None
        self.handlers: dict[str, Callable[[list[str]], None]] = {
            "/open": self.do_open, "/close": self.do_close, "/files": self.do_files, "/clear": self.do_clear,
            "/undo": self.do_undo, "/copy": self.do_copy, "/tabs": self.do_tabs, "/run": self.do_run,
            "/model": self.do_model, "/session": self.do_session, "/help": self.do_help,
        }

    @property
    def session(self) -> sessions.Session:
        return self.chat.session

    def meter(self) -> Any:
        """The right-hand prompt: open files and the context meter (last turn's prompt tokens / context)."""
        from prompt_toolkit.formatted_text import FormattedText

        files = len(self.session.files)
        text = f"{files} file{'s' * (files != 1)}"
        for p in self.instruction_files():
            text += f" + {self.session.display(p)}"
        last = self.chat.last
        if last and last.context_length:
            used = last.prompt_tokens / last.context_length
            filled = min(8, round(used * 8))
            text += f" · ctx {'▮' * filled}{'▯' * (8 - filled)} {last.prompt_tokens}/{last.context_length}"
        return FormattedText([("fg:ansibrightblack", text)])

    def instruction_files(self) -> list[str]:
        """The project's instruction files (AGENTS.md, …) that are in the context."""
        return self.session.instruction_files(self.chat.settings.instruction_files.split())

    def run(self) -> None:
        paths.ensure_dir(paths.history_file().parent)
        self.prompt = PromptSession(history=FileHistory(str(paths.history_file())), completer=SlashCompleter(
            self.chat), complete_while_typing=False, enable_open_in_editor=True, key_bindings=_keys(),
            rprompt=self.meter, multiline=False)
        n = len(self.session.messages())
        self.out.info(f"cb chat · session {self.session.id}" + (f" ({n} messages)" if n else "") +
                      " · /help for commands, Ctrl-D to quit")
        try:
            while True:
                try:
                    text = self.prompt.prompt("› ").strip()
                    if text.split()[:1] in (["/exit"], ["/quit"]):
                        break
                    if text.startswith("/"):
                        self.slash(text)
                    elif text:
                        self.turn(text)
                except KeyboardInterrupt:  # at the prompt, or between prompts: the session goes on
                    continue
                except EOFError:
                    break
        finally:
            self.chat.close()

    def turn(self, text: str, edit: bool = False) -> None:
        from cb.edits import handle_edits

        try:
            turn = self.chat.ask(text, edit=edit)
        except KeyboardInterrupt:
            self.out.info("[cancelled]")
            return
        except Exception as exc:  # one line, the REPL keeps going
            self.out.error(describe_error(exc))
            self.chat.close()  # the next turn reconnects (and restarts the local server if it died)
            return
        if turn.cancelled:
            self.out.info("[answer cancelled]")
            return
        for cut in turn.cuts:
            self.out.info(f"[… {cut}]")
        self.out.info(stats_line(turn))
        try:
            handle_edits(turn.answer, self.session, self.out, yes=False, interactive=True)
        except KeyboardInterrupt:
            self.out.info("[edits not applied]")

    def slash(self, text: str) -> None:
        command, _, request = text.partition(" ")
        if command == "/edit":  # the request is the user's words as typed, not shell words
            if request.strip():
                self.turn(request.strip(), edit=True)
            else:
                self.out.error("usage: /edit REQUEST, e.g. /edit rename area to circle_area")
            return
        try:
            words = shlex.split(text)
        except ValueError as exc:
            self.out.error(f"cannot parse the command: {exc}")
            return
        handler = self.handlers.get(words[0])
        if handler is None:
            self.out.error(f"unknown command {words[0]}; /help lists them")
            return
        try:
            handler(words[1:])
        except (sessions.SessionError, ValueError, OSError) as exc:
            self.out.error(str(exc))

    # --- slash commands --------------------------------------------------------------------------------

    def do_help(self, args: list[str]) -> None:
        for name, text in COMMANDS.items():
            self.out.line(f"{name} {text}")
        self.out.line("Enter sends · Alt-Enter newline · Ctrl-X Ctrl-E $EDITOR · Ctrl-C cancel · Ctrl-D quit",
                      style="dim")

    def do_open(self, args: list[str]) -> None:
        if not args:
            raise ValueError("usage: /open PATH...")
        for p in self.session.open_files(args):
            self.out.line(f"opened {self.session.display(p)}")

    def do_close(self, args: list[str]) -> None:
        if not args:
            raise ValueError("usage: /close PATH... | /close --all")
        removed = self.session.close_all() if args == ["--all"] else self.session.close_files(args)
        for p in removed:
            self.out.line(f"closed {self.session.display(p)}")

    def do_files(self, args: list[str]) -> None:
        for p in self.instruction_files():
            self.out.line(f"{self.session.display(p)}  (project instructions)")
        if not self.session.files:
            self.out.line("no open files (/open PATH...)")
        for p in self.session.files:
            self.out.line(self.session.display(p))

    def do_clear(self, args: list[str]) -> None:
        self.session.clear()
        self.chat.last = None
        self.out.line("conversation cleared (open files stay)")

    def do_undo(self, args: list[str]) -> None:
        from cb.edits import undo_last

        self.out.line(undo_last(self.session))

    def do_copy(self, args: list[str]) -> None:
        from cb.clip.errors import ClipError
        from cb.clip.publish import copy_text

        if self.chat.last is None or not self.chat.last.answer:
            raise ValueError("nothing to copy yet")
        text = self.chat.last.answer
        if args[:1] == ["code"]:
            blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
            if not blocks:
                raise ValueError("the last answer has no code block")
            text = blocks[-1]
        try:
            result = copy_text(text)
        except ClipError as exc:
            raise ValueError(str(exc)) from None
        self.out.line(f"copied {result.nbytes} bytes via {result.path}")

    def do_tabs(self, args: list[str]) -> None:
        from agentshell.client import Client
        from agentshell.protocol import AgentshellError

        try:
            with Client.connect(autostart=False, timeout=5.0, client_name="cb") as sh:
                tabs = sh.ls()
        except (AgentshellError, OSError) as exc:
            raise ValueError(f"no agentshell tabs ({exc})") from None
        if not tabs:
            self.out.line("no tabs (/run TAB COMMAND starts one)")
        for t in tabs:
            self.out.line(f"{t.id} {t.name or '-'}  {t.status}  {' '.join(t.argv)}")

    def do_run(self, args: list[str]) -> None:
        from agentshell.client import Client
        from agentshell.protocol import AgentshellError, NoSuchTab

        if len(args) < 2:
            raise ValueError("usage: /run TAB COMMAND")
        tab, command = args[0], " ".join(args[1:])
        try:
            with Client.connect(timeout=10.0, client_name="cb") as sh:
                try:
                    sh.run_command(tab, command)
                    self.out.line(f"sent to tab {tab}: {command}")
                except NoSuchTab:
                    info = sh.run(command, name=tab)
                    self.out.line(f"started tab {info.name or info.id}: {command}")
        except AgentshellError as exc:
            raise ValueError(str(exc)) from None

    def do_model(self, args: list[str]) -> None:
        if not args:
            self.out.line(f"model {self.chat.settings.model} ({self.chat.settings.source['model']})")
            return
        self.chat.set_model(args[0])
        self.out.line(f"model {self.chat.settings.model} from the next question on")

    def do_session(self, args: list[str]) -> None:
        project = Path(self.session.project)
        if not args:
            s = self.session
            self.out.line(f"session {s.id}: {len(s.messages())} messages, {len(s.files)} open files")
        elif args[0] == "list":
            for s in sessions.list_all(project):
                self.out.line(f"{'*' if s.id == self.session.id else ' '} {s.id}  {len(s.messages())} messages")
        elif args[0] == "new":
            self.chat.session = sessions.new(project, " ".join(args[1:]))
            self.chat.last = None
            self.out.line(f"new session {self.chat.session.id}")
        elif args[0] == "use" and len(args) == 2:
            found = sessions.find(args[1])
            sessions.use(found)
            self.chat.session = found
            self.chat.last = None
            self.out.line(f"using session {found.id}")
        else:
            raise ValueError("usage: /session [list | new [NAME] | use ID]")


def run(settings: Settings, session: sessions.Session) -> None:
    Repl(settings, session).run()
