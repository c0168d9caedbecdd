"""The ``neurotut`` command line (also ``python -m neurotut``).

Each command group lives in the module that holds its logic and contributes a
``register(subparsers)`` function that adds its parser and sets ``func`` (called with the parsed
namespace, returning an exit code). Add a group by listing its module in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    "neurotut.data.cli",
    "neurotut.ffn.cli",
    "neurotut.train",
    "neurotut.inference",
    "neurotut.doctor",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurotut",
        description="3D EM neuron segmentation: data, affinity U-Nets, Flood-Filling Networks.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, KeyError, TypeError, ValueError) as exc:
        # user errors: one clear line, no traceback
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"neurotut {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
