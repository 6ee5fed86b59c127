"""The pre-deploy check: plan, lint, rehearsal, drift, and its report."""
