"""A local stand-in for the part of Neon's API that branch rehearsals use (twin only).

It serves one project whose default branch is the local twin's database, with the same
request and response shapes as Neon's API reference (field names, status codes, `423
Locked` while an operation runs, `{"code", "message"}` errors):

    GET    /api/v2/projects/{project_id}/endpoints
    GET    /api/v2/projects/{project_id}/branches          (and .../branches/{branch_id})
    POST   /api/v2/projects/{project_id}/branches          201: branch, endpoints, operations
    DELETE /api/v2/projects/{project_id}/branches/{branch_id}
    GET    /api/v2/projects/{project_id}/operations/{operation_id}
    GET    /api/v2/projects/{project_id}/connection_uri?branch_id&endpoint_id&database_name&
                                                        role_name&pooled

The default branch's endpoint has the host of the twin's direct URL (127.0.0.1), so the
harness finds the parent branch by its DATABASE_URL_DIRECT host as it does on Neon. A new
branch is a **real copy** of its parent's database on the twin's PostgreSQL (`CREATE
DATABASE … TEMPLATE` when no session uses the parent, `pg_dump | pg_restore` otherwise),
made in the background: its operations are `running` until the copy is done, so clients
really wait. Its endpoint's host is a name that resolves nowhere (`ep-….twin.invalid`);
`connection_uri` answers a real URI to the twin (127.0.0.1, the twin's role and password)
naming the branch's own database. Branches past `expires_at` are deleted (checked on
every request and on a timer). Requests need `Authorization: Bearer <token>`; the token is
generated at each start and kept in `<root>/neon-api/standin.json` (mode 0600).

Not Neon's, the stand-in's own test hook: `POST /api/v2/_standin/faults` with
`{"locked": n}` (the next n branch creations/deletions answer 423), `{"fail_operation":
true}` (the next branch's create operation ends `failed`), `{"fail_delete": n | true}`
(the next n DELETEs, or every one until `false`, answer 500); `GET` shows them and the
counts of faults served.

Neon's behaviours past the happy path (the branch limit, annotations, pages, 204 on a
repeated DELETE, `error` operations, a lost creation answer, 429, 412, compute sizes,
compare_schema) are in neon.py, each with its switch in the same hook.

Development only, so it lives with the twin, not in what a deployed app imports. By
concern: process.py starts, finds and stops it (the twin's side); routes.py is the HTTP
server (`python -m neon_migrate.twin.standin.routes serve <folder> --daemon`, which
outlives the command that started it, as PgBouncer does); model.py the project, its
branches and operations; shapes.py the JSON of Neon's answers; copies.py the databases
that make a branch a real copy.
"""

from neon_migrate.twin.standin.process import (
    FOLDER,
    StandinInfo,
    standin_status,
    start_standin,
    stop_standin,
)

__all__ = ["FOLDER", "StandinInfo", "standin_status", "start_standin", "stop_standin"]
