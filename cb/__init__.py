"""cb: a terminal coding companion. The CLI lives in `cb.cli`; `cb.paths` owns every per-user path."""


def package_version(distribution: str = "cb") -> str | None:
    """The installed version of `distribution` (the cb package, which ships cb, ulm and agentshell, by default),
    read from its metadata without importing it; None when it is not installed."""
    from importlib import metadata  # only for --version: its import costs a start-up ~10 ms

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
