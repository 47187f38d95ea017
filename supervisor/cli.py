"""The ``dsup`` command line: run, check, ctl and import-supervisord.

It parses arguments, calls the layer that does the work, and turns every error into one clear
message and an exit code (0 ok, 1 runtime failure, 2 usage or config error), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor import __version__
from supervisor.config.preflight import preflight
from supervisor.config.schema import DEFAULT_CONFIG, load_config
from supervisor.errors import ConfigError, SupervisorError

if TYPE_CHECKING:
    from supervisor.console.console import ConsoleMode

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

_EXAMPLES = """\
examples:
  dsup check examples/dsup.toml          validate a config, list every mistake
  dsup run examples/dsup.toml            supervise the fleet in the foreground
  dsup ctl -c examples/dsup.toml status  ask a running dsup from another terminal
  dsup import-supervisord /etc/supervisor/supervisord.conf > dsup.toml
"""


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """Build the argument parser (one subcommand per front end).

    With ``verb`` (``run``...), ``ctl``'s own arguments are built only for ``ctl``: its
    two dozen subparsers stayed in a node's memory for nothing.
    """
    parser = argparse.ArgumentParser(
        prog="dsup",
        description="Keep scripts and AI-agent workers running; watch and steer them.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dsup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="supervise the programs of a config in the foreground")
    run.add_argument("config", nargs="?", type=Path, default=DEFAULT_CONFIG)
    output = run.add_mutually_exclusive_group()
    output.add_argument(
        "--quiet", action="store_true", help="print state changes only, not worker output"
    )
    output.add_argument(
        "--output", action="store_true", help="print worker output only, not state changes"
    )
    run.add_argument(
        "--json-logs", action="store_true", help="one JSON object per event, for log shippers"
    )
    run.add_argument(
        "--no-discord", action="store_true", help="run without the Discord bridge of [discord]"
    )
    run.add_argument(
        "-v", "--verbose", action="store_true", help="dsup's own debug logging on stderr"
    )

    check = sub.add_parser(
        "check",
        help="validate a config and print a one-line summary",
        description="Validate a config. Problems only this machine shows (a missing "
        "executable or cwd) are warnings, or errors with --strict.",
    )
    check.add_argument("config", nargs="?", type=Path, default=DEFAULT_CONFIG)
    check.add_argument(
        "--strict", action="store_true", help="treat warnings about this machine as errors"
    )
    check.add_argument(
        "--online",
        action="store_true",
        help="also log in to Discord and check the guild, channels and slash commands "
        "(exit 1 on any problem); the fleet is not started",
    )

    imp = sub.add_parser(
        "import-supervisord", help="turn a supervisord.conf into dsup TOML on stdout"
    )
    imp.add_argument("path", type=Path)

    ctl = sub.add_parser(
        "ctl",
        help="control a running dsup (status, start, stop, restart, tail...)",
        description="Talk to a running dsup over its control socket (state_dir/control.sock).",
        epilog="exit codes: 0 ok, 1 command failed, 2 usage, 3 no dsup running there",
    )
    if verb in (None, "ctl"):
        from supervisor.control import ctl_args  # its arguments: not in a node

        ctl_args.add_arguments(ctl)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    verb = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(verb).parse_args(argv)
    # -- dsup ctl: it maps its own errors to exit codes 0/1/2/3 --
    if args.command == "ctl":
        from supervisor.control import ctl  # its client and rendering: not in a node

        return ctl.main(args)
    try:
        if args.command == "check":
            return _check(args.config, strict=args.strict, online=args.online)
        if args.command == "import-supervisord":
            from supervisor.config.supervisord.converter import convert_file

            sys.stdout.write(convert_file(args.path))
            return EXIT_OK
        if args.command == "run":
            from supervisor.node import run_node

            _setup_logging(verbose=args.verbose)
            mode: ConsoleMode = "quiet" if args.quiet else "output" if args.output else "all"
            return run_node(
                load_config(args.config),
                mode=mode,
                json_logs=args.json_logs,
                discord=not args.no_discord,
            )
    except ConfigError as exc:
        print(f"dsup: config error\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    except SupervisorError as exc:
        print(f"dsup: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        # Ctrl-C before dsup run handles signals itself (reading the config...).
        return EXIT_INTERRUPTED
    raise AssertionError(f"unhandled command {args.command!r}")


def _check(path: Path, *, strict: bool, online: bool) -> int:
    config = load_config(path)
    warnings = preflight(config)
    label = "error" if strict else "warning"
    for warning in warnings:
        print(f"dsup: {label}: {config.path}: {warning}", file=sys.stderr)
    if warnings and strict:
        return EXIT_USAGE
    print(config.summary())
    if not online:
        return EXIT_OK
    if config.discord is None:
        print(f"dsup: {config.path}: no [discord] table: nothing to check online", file=sys.stderr)
        return EXIT_FAILURE
    from supervisor.bridge.online import run_check_online

    report = run_check_online(config.discord)
    print(report.text())
    return EXIT_OK if report.is_ok else EXIT_FAILURE


def _setup_logging(*, verbose: bool) -> None:
    """Log warnings and errors to stderr; with ``--verbose`` dsup's own debug records too.

    Other libraries' loggers (discord.py, aiohttp, asyncio) stay at INFO then: their debug
    records carry every gateway event and request with its payload (relayed output, task
    texts, member names), which is Discord's traffic, not dsup's.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if verbose:
        logging.getLogger("supervisor").setLevel(logging.DEBUG)
