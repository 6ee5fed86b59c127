"""A configuration error at startup ends the server with its one line, not a traceback.

    app.add_middleware(OneLineStartupErrors)

When a lifespan raises, Starlette hands the server the whole traceback and uvicorn logs
it: thirty lines ending in the one that matters (say, `DATABASE_URL is not set and no
local twin is running. Fix: …`). For a HarnessError, which is already that one line
with its fix, this middleware hands uvicorn that line instead; startup still fails, and
the server still exits (uvicorn: exit code 3). Any other exception keeps its traceback.
"""

from __future__ import annotations

from neon_migrate.errors import HarnessError


class OneLineStartupErrors:
    """Pure ASGI middleware; only the lifespan's startup failure is touched."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        held: list[dict] = []  # "startup failed" waits until the exception is known

        async def send_later(message) -> None:
            if message["type"] == "lifespan.startup.failed":
                held.append(message)
            else:
                await send(message)

        try:
            await self.app(scope, receive, send_later)
        except HarnessError as err:
            if held:
                held[0] = {**held[0], "message": f"error: {err}"}
            raise  # the server knows startup failed: it exits without logging it again
        finally:
            if held:
                await send(held[0])
