"""Guarded line edits: parse proposals from model text, preview them, confirm, apply atomically, undo."""
