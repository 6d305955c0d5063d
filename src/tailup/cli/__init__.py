"""Command line: `tailup run | status | verify | abort | retry | gc | demo`.

main      parse, load the settings (one place, every subcommand), dispatch; exits.py exit codes
parser    the grammar: each subcommand's flags, and which flags are settings
run       the daemon command and its signals
commands  status, verify, abort, retry, gc, demo (each imports its libraries when it runs)
demo      `tailup demo`: local servers, a live recording, a verified result
"""

from tailup.cli.main import main
from tailup.cli.parser import build_parser
from tailup.config import ACCEPTED_FORMS

__all__ = ["ACCEPTED_FORMS", "build_parser", "main"]
