"""The ``neurotut`` command line (also ``python -m neurotut``).

Each command group lives in the module that holds its logic and contributes a
``register(subparsers)`` function that adds its parser and sets ``func`` (called with the parsed
namespace, returning an exit code). Add a group by listing its module in ``COMMAND_MODULES``.

Errors: :func:`main` is the one place that turns the errors bad input raises into one line on
stderr and exit code 2: ``ValueError`` (including :class:`~neurotut.io.CorruptCheckpointError`),
``TypeError`` (wrong dtypes), ``KeyError`` (a missing dataset) and ``OSError`` (missing files,
:class:`~neurotut.io.OutputExistsError`, files h5py cannot read,
:class:`~neurotut.data.download.DownloadError`), plus ``MemoryError``. Other exceptions are bugs
and keep their traceback. ``NEUROTUT_DEBUG=1`` shows the traceback of every error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMAND_MODULES = [
    "neurotut.data.cli",
    "neurotut.ffn.cli",
    "neurotut.train",
    "neurotut.inference",
    "neurotut.agglomerate",
    "neurotut.blockwise.cli",
    "neurotut.metrics",
    "neurotut.doctor",
    "neurotut.neuroglancer_view",
]

#: the error types reported as one line (bad input, not bugs)
USER_ERRORS = (ValueError, TypeError, KeyError, OSError, MemoryError)
DEBUG_ENV = "NEUROTUT_DEBUG"


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line too, pointing to ``--help`` instead of printing the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="neurotut",
        description="3D EM neuron segmentation: data, affinity U-Nets, Flood-Filling Networks.",
        epilog=f"Errors are reported in one line; {DEBUG_ENV}=1 shows their traceback.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def command_name(args: argparse.Namespace) -> str:
    """``neurotut data fetch``, ``neurotut ffn train``, ``neurotut segment``..."""
    parts = [getattr(args, key, None) for key in ("command", "data_command", "ffn_command", "blockwise_command")]
    return " ".join(["neurotut"] + [p for p in parts if p])


def error_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a KeyError's message without its quotes)."""
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, MemoryError):
        text = f"out of memory{': ' + str(exc) if str(exc) else ''}; try a smaller volume"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"{command_name(args)}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"{command_name(args)}: error: {error_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
