"""``python -m nhl.data ensure``: get Fashion-MNIST before anything runs (``make run``/``make test``).

See :func:`nhl.data.fashion_mnist.ensure_available` for the order (``data/``, Debian's package
files, torchvision's download, ``apt-get install dataset-fashion-mnist`` when that needs no
password). Exit status 0 when the data is there, 1 (with instructions) when it is not.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nhl.data", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("ensure", help="find, download or install Fashion-MNIST")
    e.add_argument("--root", default=None, help="dataset folder (default: data/ or $NHL_DATA)")
    e.add_argument("--no-download", action="store_true", help="do not try torchvision's download")
    e.add_argument("--no-install", action="store_true", help="never run apt-get")
    e.add_argument("--dry-run", action="store_true",
                   help="download and install nothing; print what would be done")
    args = p.parse_args(argv)

    from .fashion_mnist import ensure_available

    t0 = time.perf_counter()
    try:
        found = ensure_available(args.root, download=not args.no_download,
                                 install=not args.no_install, dry_run=args.dry_run,
                                 echo=lambda line: print(line, flush=True))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{found.describe()} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
