"""Helpers shared by test packages: checkpoint builders, process fixtures."""
