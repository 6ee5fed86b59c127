"""What a web app mounts to be watched: health routes (`.[web]`) and metrics (`.[metrics]`),
plus the FastAPI side of the request session (`session.SessionDep`) and one-line startup
errors (`startup.OneLineStartupErrors`), both `.[web]`.

Nothing here is imported by the harness itself, so neither extra is needed to migrate.
"""
