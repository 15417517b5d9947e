"""``python -m compilecache``: the ``compilecache`` command."""

from .cli import main

main(prog_name="compilecache")
