"""Tooling around the tutorial, outside the installed package (run by the Makefile):

- ``python -m tools.notebooks``: execute the notebooks (``make run``, ``make notebooks``);
- ``python -m tools.site``: the static HTML site of the executed notebooks (``make site``);
- ``python -m tools.student``: student copies without the solutions (``make student``).

:func:`command` is the one command-line body they share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def command(
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    arguments: Sequence[tuple[tuple[str, ...], dict]],
    action: Callable[[argparse.Namespace], object],
    failures: tuple[type[BaseException], ...] = (),
    failure_message: str = "error: {}",
) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) with ``arguments`` (``(flags, options)`` pairs of
    ``add_argument``), run ``action(args)`` and return the exit status: 0, or 1 after printing
    ``failure_message`` (``{}`` is the error) to stderr when it raises one of ``failures``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for flags, options in arguments:
        parser.add_argument(*flags, **options)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        action(args)
    except failures as err:
        print(failure_message.format(err), file=sys.stderr)
        return 1
    return 0
