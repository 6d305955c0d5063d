"""How a command ends: its exit code, and the one line that says why it failed."""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


def print_error(exc: Exception) -> None:
    from tailup.observe import redact_text

    print(f"tailup: {redact_text(str(exc))}", file=sys.stderr)
