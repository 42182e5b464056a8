"""The `vrm` command line: a thin front end that parses input, calls core services and renders results."""
