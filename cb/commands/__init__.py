"""One module per area of `cb` commands; registered in `cb.cli`."""
