"""The migration harness: lock, per-revision reporting, env.py glue, verification."""
