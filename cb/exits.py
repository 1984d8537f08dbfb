"""cb's exit codes, shared by every command and by the edit flow (documented in `cb --help`)."""

EXIT_OK = 0
EXIT_ERROR = 1  # the model server, config or a file could not be used
EXIT_USAGE = 2  # bad arguments
EXIT_EDITS_PENDING = 3  # edits were proposed and not applied (no TTY and no --yes, or declined)
EXIT_EDITS_FAILED = 4  # edits were proposed and could not be applied (stale file, malformed block)
EXIT_INTERRUPTED = 130  # Ctrl-C
