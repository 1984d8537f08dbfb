"""One answer's proposals as the page shows them, and what the page's buttons do to them.

The terminal's confirmation (`cb.confirm.Confirmer`) asks file by file and then applies what was accepted,
all at once; a `Batch` does the same across clicks. Each file of the plan is a `Card` the person decides:
Apply, Decline, or Edit (the proposal's blocks in a text box, re-planned by `cb.confirm.replan_edited`; the
card is replaced by the changes the edited blocks make, undecided). A change with a warning needs Apply
twice: the second click says "apply anyway". When every card is decided the batch is committed through
`cb.edits.apply_edits` with the original proposals and a confirmation that returns the accepted ones, so the
same code as `cb ask` and `cb apply` re-plans, refuses a stale file (changed since the model saw it, or since
the diff was shown), writes all or nothing and records the undo entry. A committed batch is closed: a
second click does nothing. An applied batch can be undone (`tools.Journal.undo` of its entry).

A batch whose answer held a malformed block, or whose plan has errors, cannot be applied, as in the CLI.
Proposed shell commands are `Run`s: each is sent to its agentshell tab at most once, and only on a request
that says it was confirmed (the page asks first).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cb import paths

if TYPE_CHECKING:
    from tools import EditProposal, FileChange, Plan, RunProposal

OPEN = "open"


class BatchError(ValueError):
    """A request that does not fit the batch (unknown card, bad decision); one line for the page."""


@dataclass
class Card:
    """One file's change and the person's decision on it (None until decided)."""

    change: FileChange
    decision: str | None = None
    note: str = ""  # why the last click did not take (a warning to confirm, an edit that was not used)


@dataclass
class Run:
    """A proposed shell command: "proposed" until confirmed, then "sent" or "failed"."""

    proposal: RunProposal
    state: str = "proposed"
    message: str = ""

    @property
    def tab(self) -> str:
        return self.proposal.tab or "cb"


@dataclass
class Batch:
    """The proposals of one answer (`message_index`: the assistant message they came in)."""

    root: Path
    message_index: int
    proposals: tuple[EditProposal, ...] = ()
    cards: list[Card] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    status: str = OPEN
    message: str = ""
    entry_id: str | None = None
    id: str = field(default_factory=lambda: secrets.token_hex(6))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_answer(cls, answer: str, root: Path, message_index: int) -> Batch | None:
        """The batch an answer proposes (planned against the files now), or None when it proposes nothing."""
        from tools import parse_proposals, plan_batch

        parsed = parse_proposals(answer)
        if not parsed.proposals and not parsed.errors:
            return None
        edits = tuple(p for p in parsed.proposals if p.kind != "run")
        runs = [Run(p) for p in parsed.proposals if p.kind == "run"]  # type: ignore[arg-type]
        errors = [f"malformed edit at answer {e}" for e in parsed.errors]
        batch = cls(root, message_index, edits, runs=runs)
        if edits:
            plan: Plan = plan_batch(edits, root)
            batch.cards = [Card(c) for c in plan.changes]
            errors += plan.errors
            batch.notes = plan.notes
        batch.errors = tuple(errors)
        if batch.errors:
            batch.status, batch.message = "refused", "not applied: " + "; ".join(batch.errors)
        elif edits and not batch.cards:
            batch.status, batch.message = "nothing", "nothing to apply"
        return batch

    @property
    def open(self) -> bool:
        return self.status == OPEN and bool(self.cards)

    def card(self, index: int) -> Card:
        if not 0 <= index < len(self.cards):
            raise BatchError(f"no file {index} in this batch")
        return self.cards[index]

    # --- the buttons ---------------------------------------------------------------------------------

    def decide(self, index: int | None, decision: str, anyway: bool = False) -> None:
        """Apply / Decline one card (None: every undecided card); commits when all are decided. A closed
        batch ignores it."""
        if decision not in ("apply", "decline"):
            raise BatchError(f"unknown decision {decision!r}")
        with self.lock:
            if not self.open:
                return
            for card in self.cards if index is None else [self.card(index)]:
                if index is None and card.decision is not None:
                    continue
                if decision == "apply" and card.change.warnings and not anyway:
                    card.note = "warning: " + "; ".join(card.change.warnings) + ". Apply anyway?"
                    continue
                card.decision, card.note = decision, ""
            if all(c.decision is not None for c in self.cards):
                self._commit()

    def edit(self, index: int, blocks: str) -> None:
        """Replace a card by the changes its edited blocks make (or keep it, saying why the edit was not used)."""
        from cb.confirm import EditRejected, replan_edited

        with self.lock:
            if not self.open:
                return
            card = self.card(index)
            try:
                changes = replan_edited(blocks, self.root)
            except EditRejected as exc:
                card.note = str(exc)
                return
            self.cards[index:index + 1] = [Card(c) for c in changes]

    def undo(self) -> None:
        """Take back this batch if it was applied (refused, and said why, when a file changed since)."""
        from tools import Journal

        with self.lock:
            if self.status != "applied" or self.entry_id is None:
                return
            result = Journal(paths.undo_dir()).undo(self.entry_id)
            self.message = result.message()
            if result.ok:
                self.status = "undone"

    def _commit(self) -> None:
        from cb.edits import apply_edits

        accepted = tuple(p for c in self.cards if c.decision == "apply" for p in c.change.proposals)

        def confirm(plan: Plan) -> Sequence[EditProposal]:
            return accepted

        result, _ = apply_edits(self.proposals, self.root, None, yes=False, confirm=confirm)
        self.status, self.message = result.status, result.message()
        self.entry_id = result.entry.id if result.entry else None
        self.notes += result.notes

    def run(self, index: int, confirmed: bool) -> None:
        """Send proposed command `index` to its tab, once, if the request says the person confirmed it."""
        from agentshell.protocol import AgentshellError
        from cb.edits import send_to_tab

        if not 0 <= index < len(self.runs):
            raise BatchError(f"no command {index} in this batch")
        if not confirmed:
            raise BatchError("a proposed command runs only after it is confirmed")
        with self.lock:
            run = self.runs[index]
            if run.state != "proposed":
                return
            try:
                send_to_tab(run.tab, run.proposal.command)
                run.state, run.message = "sent", f"sent to tab {run.tab}"
            except AgentshellError as exc:
                run.state, run.message = "failed", str(exc)

    def decline_run(self, index: int) -> None:
        if not 0 <= index < len(self.runs):
            raise BatchError(f"no command {index} in this batch")
        with self.lock:
            if self.runs[index].state == "proposed":
                self.runs[index].state, self.runs[index].message = "declined", "not run"

