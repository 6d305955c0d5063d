"""`tailup COMMAND`: parse, load the settings (the one place, for every subcommand), dispatch.

Every setting can be given as a flag, as TAILUP_<NAME> in the environment, in a .env file or in a
TOML file (--config or TAILUP_CONFIG); flags win, then env, .env, the file. Bad settings exit with
code 2 and a message naming the setting and the accepted form. Settings are loaded in one place,
``main``, for every subcommand: each one reads the same sources and refuses the same mistakes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tailup.cli import commands
from tailup.cli.exits import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, print_error
from tailup.cli.parser import build_parser, setting_overrides
from tailup.cli.run import cmd_run
from tailup.config import Settings, dotenv_file, load_settings, unknown_variables
from tailup.errors import ConfigError, TailupError

_HANDLERS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "run": cmd_run,
    "status": commands.cmd_status,
    "verify": commands.cmd_verify,
    "abort": commands.cmd_abort,
    "retry": commands.cmd_retry,
    "gc": commands.cmd_gc,
    "salvage": commands.cmd_salvage,
    "url": commands.cmd_url,
    "demo": commands.cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = _HANDLERS[args.command]
    try:
        return handler(args, _settings(args))
    except ConfigError as exc:
        print_error(exc)
        return EXIT_USAGE
    except TailupError as exc:
        print_error(exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _config_file(args: argparse.Namespace) -> Path | None:
    given: Path | None = getattr(args, "config", None)
    from_env = os.environ.get("TAILUP_CONFIG")
    return given if given is not None else (Path(from_env) if from_env else None)


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of any subcommand, the one place they are loaded: a warning for each unknown
    TAILUP_ variable, then flags, environment, .env and the config file, then logging (every
    command logs through the redacting formatter, library warnings included; the daemon at
    --log-level, the other commands at warning)."""
    for warning in unknown_variables(os.environ, dotenv_file()):
        print(f"tailup: warning: {warning}", file=sys.stderr)
    settings = load_settings(setting_overrides(args), _config_file(args))
    from tailup.observe import configure_logging, url_password

    configure_logging(
        settings.log_format.value,
        settings.log_level if args.command == "run" else "warning",
        secrets=[url_password(settings.redis_url)],
    )
    return settings
