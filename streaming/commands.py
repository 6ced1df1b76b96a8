"""What every ``mediapulse`` command line shares: the ``--config``/``--set`` arguments and the exit codes.

``mediapulse`` (:mod:`streaming.cli`), ``mediapulse warehouse`` (:mod:`sinks.warehouse.admin`) and
``mediapulse emr`` (:mod:`bootstrap.cli`) all end with 0 when done, 1 when the work failed and 2 when the
user has something to fix first: arguments, configuration or missing inputs. An error of the last kind
derives from :class:`UsageError`, wherever it is defined.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DONE, FAILED, USAGE = 0, 1, 2


class UsageError(Exception):
    """Something the user fixes in the arguments, the configuration or the inputs (exit code 2)."""


def exit_code(error: BaseException) -> int:
    """The exit code a command ends with after ``error``: 2 for usage errors, else 1."""
    return USAGE if isinstance(error, UsageError | argparse.ArgumentError) else FAILED


def add_config_arguments(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--config FILE`` (``args.config``, a Path or None) and repeatable ``--set KEY=VALUE``
    (``args.overrides``), the two arguments :func:`streaming.config.load_config` takes."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None if default is None else Path(default),
        help=f"YAML config (default: {default or 'config/local.yaml'})",
    )
    add_overrides_argument(parser)


def add_overrides_argument(
    parser: argparse.ArgumentParser,
    help_text: str = "override a config key, e.g. --set engagement.window='10 min' (repeatable)",
) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


def one_line(error: BaseException) -> str:
    """An error's message on one line (a config error lists each bad key on a line of its own)."""
    return " ".join(part.strip() for part in str(error).splitlines() if part.strip())
