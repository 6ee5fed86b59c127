#!/usr/bin/env python3
"""Pre-deploy check: is this build safe to ship to the configured database?

CI runs it before every deploy; it changes nothing. Exit codes: 0 safe, 1 a check
failed, 2 configuration or usage error, 3 a database endpoint unreachable.
Usage: python scripts/predeploy_check.py [--json] [--only IDS] [--skip IDS]
The checks live in neon_migrate/check/predeploy.py; this file only hands over the arguments.
"""

import sys

from neon_migrate.cli import main

if __name__ == "__main__":
    sys.exit(main(["check", *sys.argv[1:]]))
