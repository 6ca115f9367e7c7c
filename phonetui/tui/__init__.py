"""The Textual app: a thin client of the headless core (run `phonetui` with no subcommand)."""
