"""The ``nareta`` command line: one entry point, a subcommand per pipeline stage.

The CLI only parses arguments and calls the stage's function. Each subcommand lives in the
module named in ``COMMANDS``, which provides ``configure_parser(parser)`` and
``run(args) -> int`` (``module:name`` names ``configure_name_parser`` and ``run_name``
instead, for several subcommands in one module); modules are imported only when their
command runs, so ``--help`` is fast and a missing optional dependency only affects its own
command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nareta import __version__
from nareta.errors import NaretaError

# command name -> (module, one-line help). Nested commands use "group subcommand".
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("data_pipeline.ingest_cli", "build a RoadGraph artifact from an OSM file"),
    "pretrain": ("models.processor.pretrain",
                 "pretrain the shortest-path processor on synthetic graphs"),
    "processor predict": ("models.processor.cli",
                          "neural shortest paths for graphs in an .npz file"),
    "simulate": ("data_pipeline.simulate", "simulate traffic with SUMO into a trip table"),
    "train": ("models.eta.train", "train the ETA model's encoder and decoder on trips"),
    "eta": ("models.inference.query_cli", "answer one ETA (or route) query"),
    "evaluate": ("models.evaluation.evaluate", "score a model or baseline on a trip table"),
    "transfer": ("nareta.transfer", "make an ETA model trained on one city usable on another"),
    "serve": ("service.cli", "run the HTTP API"),
    "score": ("batch.score", "score OD pairs in batch on Dask"),
    "traffic check": ("data_pipeline.traffic_cli:check",
                      "report what a traffic feed's rows map to on a road graph"),
    "traffic from-trips": ("data_pipeline.traffic_cli:from_trips",
                           "derive a traffic feed from trips with driven routes"),
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nareta",
        description="Road-network ETA and routing built on neural algorithmic reasoning.",
    )
    parser.add_argument("--version", action="version", version=f"nareta {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (module_name, help_text) in COMMANDS.items():
        words = name.split()
        target = subparsers
        if len(words) == 2:
            if words[0] not in groups:
                group = subparsers.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = group.add_subparsers(
                    dest=f"{words[0]}_command", metavar="COMMAND", required=True
                )
            target = groups[words[0]]
        # add_help=False: "--help" after a command reaches the command's own full parser.
        sub = target.add_parser(words[-1], help=help_text, add_help=False)
        sub.set_defaults(_module=module_name, _command_name=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    # Parse once to find the command, then let its module add its own options.
    known, _ = parser.parse_known_args(argv)
    module_name, _, entry = known._module.partition(":")
    module = importlib.import_module(module_name)
    configure = getattr(module, f"configure_{entry}_parser" if entry else "configure_parser")
    run = getattr(module, f"run_{entry}" if entry else "run")
    full = argparse.ArgumentParser(
        prog=f"nareta {known._command_name}", description=COMMANDS[known._command_name][1]
    )
    configure(full)
    words = known._command_name.split()
    args = full.parse_args(argv[len(words) :])
    try:
        return int(run(args) or 0)
    except NaretaError as exc:
        print(f"nareta {known._command_name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nareta {known._command_name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
