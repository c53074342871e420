"""`python -m dualhead info|bench`: the library's own tools, without the detector application
(the `dualhead` command has them too, beside train, predict, ...)."""

from __future__ import annotations

import argparse
import sys

from dualhead import __version__, bench
from dualhead.info import report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dualhead", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"dualhead {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{info,bench}")
    sub.add_parser("info", help="what was built: CPU/CUDA kernels, CUDA archs, torch version, GPU")
    b = sub.add_parser(
        "bench",
        help="assignment benchmarks (contract §5 workloads) against the baselines",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    bench.add_arguments(b)
    args = p.parse_args(argv)
    try:
        if args.cmd == "info":
            print(report())
            return 0
        return bench.run(args)
    except KeyboardInterrupt:
        print(f"\ndualhead {args.cmd}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:  # bad input: one line, not a traceback
        print(f"dualhead {args.cmd}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
