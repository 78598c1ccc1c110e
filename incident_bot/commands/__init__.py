"""One module per sub-command family; each exposes ``add_parser(subparsers)``."""
