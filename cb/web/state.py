"""`WebState`: what one `cb web` process holds, and every action its pages can take. No HTTP, no HTML.

The session is the project's current one, re-read from disk on every request (`session()`), so a file opened
with `cb open` in a terminal, or a `cb session use`, shows on the next page load, and what the page does the
CLI sees. One `Chat` (one backend connection, the local server started on first use) runs one turn at a
time: `turn_lock` also covers measuring the context, which talks to the same backend. Batches live in memory
for this process, by id and by (session, message index) so a reloaded page shows them under their answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cb import context, paths
from cb import session as sessions
from cb.chat import Chat, Turn
from cb.config import Settings
from cb.render import Out
from cb.web.batches import Batch, BatchError


class Busy(RuntimeError):
    """A turn is already running (one at a time, as in the REPL)."""


@dataclass(frozen=True)
class OpenFile:
    """An open file as the files page lists it."""

    path: str
    shown: str
    version: str  # "" when unreadable
    lines: int
    size: int
    error: str = ""


class WebState:
    def __init__(self, settings: Settings, out: Out) -> None:
        self.settings = settings
        self.project = Path(settings.project_root)
        self.chat = Chat(settings, self.session(), out)
        self.turn_lock = threading.Lock()
        self.batches: dict[str, Batch] = {}
        self._by_message: dict[tuple[str, int], Batch] = {}
        self.last_turn: Turn | None = None
        self.measured: context.Assembled | None = None

    def close(self) -> None:
        self.chat.close()

    # --- sessions ------------------------------------------------------------------------------------

    def session(self) -> sessions.Session:
        """The project's current session, as it is on disk now."""
        return sessions.current(self.project)

    def sessions(self) -> list[sessions.Session]:
        return sessions.list_all(self.project)

    def use_session(self, ref: str) -> sessions.Session:
        found = sessions.find(ref)
        if found.project != str(self.project):
            raise sessions.SessionError(f"session {found.id} belongs to another project ({found.project})")
        sessions.use(found)
        self._forget_turn()
        return found

    def new_session(self, name: str = "") -> sessions.Session:
        self._forget_turn()
        return sessions.new(self.project, name)

    def clear(self) -> None:
        """Forget the conversation (open files stay), as /clear does."""
        current = self.session()
        current.clear()
        for key in [k for k in self._by_message if k[0] == current.id]:
            del self._by_message[key]
        self._forget_turn()

    def _forget_turn(self) -> None:
        self.last_turn = None
        self.measured = None

    # --- open files ----------------------------------------------------------------------------------

    def open_files(self, names: list[str]) -> list[str]:
        return self.session().open_files([str(self._resolve(n)) for n in names])

    def close_file(self, path: str) -> list[str]:
        return self.session().close_files([path])

    def files(self) -> list[OpenFile]:
        from tools.hashing import file_version

        current = self.session()
        listed = []
        for p in current.files:
            shown = current.display(p)
            try:
                data = Path(p).read_bytes()
            except OSError as exc:
                listed.append(OpenFile(p, shown, "", 0, 0, exc.strerror or str(exc)))
                continue
            lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
            listed.append(OpenFile(p, shown, file_version(data), lines, len(data)))
        return listed

    def _resolve(self, name: str) -> Path:
        """A path typed on the page: relative to the project root (the page has no cwd of its own)."""
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.project / path

    # --- a turn --------------------------------------------------------------------------------------

    def turn(self, question: str, on_text: Callable[[str], None],
             on_status: Callable[[str], None]) -> tuple[Turn, Batch | None]:
        """Ask one question (Busy when another turn runs); returns the turn and the batch it proposes."""
        if not self.turn_lock.acquire(blocking=False):
            raise Busy("an answer is already being generated; wait for it or stop it")
        try:
            current = self.session()
            self.chat.session = current
            on_status("connecting to the model server…")
            try:
                self.chat.backend()
                on_status("thinking…")
                turn = self.chat.ask(question, show=False, on_text=on_text)
            except BaseException:
                self.chat.close()  # the next turn reconnects (and restarts the local server if it died)
                raise
            self.last_turn = turn
            if turn.cancelled:
                return turn, None
            index = len(current.messages()) - 1
            batch = Batch.from_answer(turn.answer, self.project, index)
            if batch is not None:
                self.batches[batch.id] = batch
                self._by_message[(current.id, index)] = batch
            return turn, batch
        finally:
            self.turn_lock.release()

    def batch_for(self, session_id: str, message_index: int) -> Batch | None:
        return self._by_message.get((session_id, message_index))

    def batch(self, batch_id: str) -> Batch:
        found = self.batches.get(batch_id)
        if found is None:
            raise BatchError("this batch is no longer known (cb web was restarted); ask again")
        return found

    def measure(self) -> context.Assembled:
        """What the next turn's prompt would take, source by source (counted by the server's tokenizer)."""
        if not self.turn_lock.acquire(blocking=False):
            raise Busy("an answer is being generated; measure when it is done")
        try:
            self.chat.session = self.session()
            try:
                self.measured = self.chat.assemble("")
            except BaseException:
                self.chat.close()
                raise
            return self.measured
        finally:
            self.turn_lock.release()

    # --- undo ----------------------------------------------------------------------------------------

    def undo_last(self) -> str:
        """Undo the newest applied batch (as `cb undo`); a batch card of it shows "undone"."""
        from tools import Journal

        result = Journal(paths.undo_dir()).undo_last()
        if result.ok and result.entry is not None:
            for b in self.batches.values():
                with b.lock:
                    if b.entry_id == result.entry.id:
                        b.status, b.message = "undone", result.message()
        return result.message()
