"""The ``steward`` command line (click). Subcommands are imported only when used."""
