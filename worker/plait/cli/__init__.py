"""The ``plait`` command line (also installed as ``kubectl-plait``, so ``kubectl plait ...`` works).

Each command group lives in its own module and registers its sub-parsers here; a command is a
function taking the parsed arguments and returning an exit code. Errors plait raises on purpose
print as one ``error: ...`` line and exit 1; nothing prints a traceback at a user.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from plait.cli import dev, processes
from plait.errors import PlaitError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plait",
        description="Durable workflows on Kubernetes, written as plain Python.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (debug level)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    dev.register(commands)
    processes.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        code: int = args.handler(args)
    except PlaitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
