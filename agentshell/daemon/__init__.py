"""The agentshell daemon: an asyncio server on a Unix socket that owns the PTY tabs (see server.py)."""
