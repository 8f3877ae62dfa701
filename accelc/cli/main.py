"""``accelc`` command line: a thin layer over the Python API.

Exit codes: 0 success; 1 compile/run error (bad model, unsupported op, failed verification,
bad data); 2 usage error (bad option, bad pipeline string, bad config); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from typing import Sequence

from accelc import __version__
from accelc.cli import commands
from accelc.cli.common import DEFAULTS
from accelc.cli.config import check_keys, config_for, find_config, load_config
from accelc.errors import AccelcError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage errors → exit code 2 with one clear line
        self.print_usage(sys.stderr)
        sys.stderr.write(f"accelc: error: {message}\n")
        sys.exit(2)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = _Parser(prog="accelc", description="Ahead-of-time acceleration compiler for PyTorch models.")
    parser.add_argument("--version", action="version", version=f"accelc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parsers = {}
    for cmd in commands.ALL:
        parsers[cmd.NAME] = cmd.add_parser(sub)
    return parser, parsers


def _known_dests(p: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in p._actions if a.dest not in ("help", "model", "config")}


def _apply_config_and_defaults(args: argparse.Namespace, parsers: dict[str, argparse.ArgumentParser]) -> None:
    p = parsers[args.command]
    path = find_config(getattr(args, "config", None))
    if path is not None:
        data = load_config(path)
        known = {name: _known_dests(sp) for name, sp in parsers.items()}
        check_keys(data, known, path)
        for key, value in config_for(data, args.command, set(parsers)).items():
            if key in known[args.command] and not hasattr(args, key):
                setattr(args, key, value)
    for dest, default in getattr(p, DEFAULTS).items():
        if not hasattr(args, dest):
            setattr(args, dest, default)


def main(argv: Sequence[str] | None = None) -> int:
    parser, parsers = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    debug = "--debug" in (argv if argv is not None else sys.argv)
    if not debug:  # library deprecation chatter is not for users of the CLI
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    try:
        _apply_config_and_defaults(args, parsers)
        debug = args.debug
        return int(commands.BY_NAME[args.command].run(args) or 0)
    except AccelcError as e:
        if debug:
            traceback.print_exc()
        print(f"accelc: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("accelc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stderr.close()
        return 0
    except Exception as e:  # a bug in accelc or an integration: say so plainly
        if debug:
            traceback.print_exc()
        print(f"accelc: internal error: {type(e).__name__}: {e}\n  hint: rerun with --debug for the traceback "
              f"and report it", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
