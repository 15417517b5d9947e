"""The command line's exit codes (a module of their own: commands import them, and the
command group imports the commands)."""

from __future__ import annotations

#: Usage errors: bad options, bad configuration.
EXIT_USAGE = 2
#: Backend failures: a store or a compiler failed.
EXIT_BACKEND = 3
#: Verification failures: ``verify`` found bad entries, or damage to the index.
EXIT_VERIFY = 4
