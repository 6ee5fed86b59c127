"""What a web app mounts to be watched: health routes (`.[web]`) and metrics (`.[metrics]`).

Nothing here is imported by the harness itself, so neither extra is needed to migrate.
"""
