"""The bodies of `neon-migrate <command>`; cli.py parses, dispatches and turns errors into
one line and an exit code."""
