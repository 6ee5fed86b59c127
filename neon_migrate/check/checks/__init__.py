"""The pre-deploy check's checks, one module each; check/predeploy.py runs them in order."""
