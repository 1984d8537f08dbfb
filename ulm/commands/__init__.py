"""One module per `ulm` command; registered in `ulm.cli`."""
