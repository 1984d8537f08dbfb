"""cb: a terminal coding companion. The CLI lives in `cb.cli`; `cb.paths` owns every per-user path."""

__version__ = "0.1.0"
