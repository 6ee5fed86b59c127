#!/usr/bin/env python3
"""Write the Grafana dashboard for the harness's Prometheus metrics.

    python scripts/generate_dashboard_config.py [--output dashboards/database.json]

Import the file in Grafana (Dashboards > New > Import) and pick the Prometheus data
source that scrapes the app's /metrics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neon_migrate.web.dashboard import dashboard, render  # noqa: E402

DEFAULT = ROOT / "dashboards" / "database.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT)
    args = parser.parse_args(argv)
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(render())
    except OSError as err:
        print(f"error: cannot write {args.output}: {err.strerror}. Fix: choose a writable "
              "path with --output.", file=sys.stderr)  # fmt: skip
        return 2
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    print(f"dashboard: {len(dashboard()['panels'])} panels written to {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
