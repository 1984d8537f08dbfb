"""run: a shell command for an agentshell tab (block tag `run`). Only parsed here; cb asks, then runs it."""

from __future__ import annotations

from tools.proposals import RunProposal
from tools.spec import ToolSpec


def run(command: str, tab: str = "") -> RunProposal:
    """Run a shell command in a process tab, after the user confirms.

    Args:
        command: the shell command line.
        tab: the name of the tab to run it in; empty for cb's default tab.
    """
    if not command.strip():
        raise ValueError("the command is empty")
    return RunProposal(tab.strip(), command.strip())


SPEC = ToolSpec(run, tag="run", body="command", destructive=False)
