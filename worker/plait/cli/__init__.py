"""The ``plait`` command line (also installed as ``kubectl-plait``, so ``kubectl plait ...`` works).

Each command group lives in its own module and registers its sub-parsers here; a command is a
function taking the parsed arguments and returning an exit code. Errors plait raises on purpose
print as one ``error: ...`` line and exit 1 (a :class:`~plait.cli.common.CommandError` may choose
another code); nothing prints a traceback at a user.

    dev.py          plait dev up|down|status|env
    processes.py    plait operator, plait worker
    instances.py    plait submit, get, status, result, list, logs
    control.py      plait signal, pause, resume, cancel
    retry.py        plait retry, fork
    upgrade.py      plait upgrade
    definitions.py  plait definitions, definitions diff
    schedules.py    plait schedule list|get|trigger|suspend|resume|backfill
    ui.py           plait ui (the web UI, in plait._ui)
    steptree.py, view.py, follow.py, lookup.py, inputs.py, format.py: what those share
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import httpx

from plait._logging import LOG_FORMATS, TEXT_FORMAT, configure
from plait.cli import control, definitions, dev, instances, processes, retry, schedules, ui, upgrade
from plait.cli.common import CommandError, program
from plait.errors import PlaitError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program(),
        description="Durable workflows on Kubernetes, written as plain Python.",
        epilog="Cluster commands find the API server like kubectl: --kubeconfig, $KUBECONFIG, in-cluster, "
        "~/.kube/config; --context and -n/--namespace as in kubectl. "
        "`plait COMMAND --help` describes each command.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (debug level)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    instances.register(commands)
    control.register(commands)
    retry.register(commands)
    upgrade.register(commands)
    definitions.register(commands)
    schedules.register(commands)
    ui.register(commands)
    dev.register(commands)
    processes.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    log_format = getattr(args, "log_format", None)
    if log_format is None:
        logging.basicConfig(level=level, format=TEXT_FORMAT)
    elif log_format in LOG_FORMATS:
        configure(log_format, level)
    else:
        print(f"error: PLAIT_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}", file=sys.stderr)
        return 2
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        code: int = args.handler(args)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code
    except PlaitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except httpx.TransportError as error:  # a watch or stream that lost its server half-way
        print(f"error: lost the connection to the Kubernetes API server: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`plait list | head`): stop quietly, like other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return code
