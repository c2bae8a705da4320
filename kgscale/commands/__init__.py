"""One module a subcommand. Each has ``register(subparsers)`` that adds its
parser and sets ``func``; :mod:`kgscale.cli` lists them in ``COMMANDS``."""
