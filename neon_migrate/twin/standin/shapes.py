"""The JSON the stand-in answers, shaped as in Neon's API reference.

Field for field what a client of Neon's API reads (and a few it may log), so the harness's
client takes the same path against the twin as against Neon. Kept apart from model.py:
these are Neon's shapes, the model is the stand-in's own state.
"""

from __future__ import annotations

from typing import Any


def branch_json(project_id: str, b: dict) -> dict:
    """A branch as Neon's API reference shapes it."""
    state = "ready" if b["state"] in ("ready", "deleting") else "init"
    out = {
        "id": b["id"],
        "project_id": project_id,
        "name": b["name"],
        "current_state": state,
        "state_changed_at": b.get("updated_at", b["created_at"]),
        "creation_source": "neon-migrate-standin",
        "primary": b["default"],
        "default": b["default"],
        "protected": False,
        "cpu_used_sec": 0,
        "compute_time_seconds": 0,
        "active_time_seconds": 0,
        "written_data_bytes": 0,
        "data_transfer_bytes": 0,
        "created_at": b["created_at"],
        "updated_at": b.get("updated_at", b["created_at"]),
        "init_source": "parent-data",
    }
    if b.get("parent_id"):
        out["parent_id"] = b["parent_id"]
    if b["state"] == "init":
        out["pending_state"] = "ready"
    if b["state"] == "deleting":
        out["pending_state"] = "storage_deleted"
    if b.get("expires_at"):
        out["expires_at"] = b["expires_at"]
        out["ttl_interval_seconds"] = b.get("ttl_interval_seconds")
    return out


def endpoint_json(project_id: str, b: dict, compute: list) -> dict:
    """A branch's endpoint as Neon's shapes it; `compute` its (min, max) CU."""
    return {
        "host": b["host"],
        "id": b["endpoint_id"],
        "project_id": project_id,
        "branch_id": b["id"],
        "autoscaling_limit_min_cu": compute[0],
        "autoscaling_limit_max_cu": compute[1],
        "region_id": "local-twin",
        "type": "read_write",
        "current_state": "active" if b["state"] == "ready" else "init",
        "pooler_enabled": False,
        "pooler_mode": "transaction",
        "disabled": False,
        "passwordless_access": False,
        "creation_source": "neon-migrate-standin",
        "created_at": b["created_at"],
        "updated_at": b.get("updated_at", b["created_at"]),
        "proxy_host": "twin.invalid",
        "suspend_timeout_seconds": 0,
        "provisioner": "neon-migrate-standin",
    }


def created(project: Any, branch: dict, ops: list[dict], endpoint: bool) -> dict:
    """The body of a 201 to a branch creation: the branch, its endpoint (if one was
    asked for), the operations to wait on, its role, database and connection URI."""
    logical = project.branches[project.default_id]["database"]
    answer = {
        "branch": project.branch_json(branch),
        "endpoints": [project.endpoint_json(branch)] if endpoint else [],
        "operations": [project.public(op) for op in ops],
        "roles": [
            {
                "branch_id": branch["id"],
                "name": project.pg["user"],
                "protected": False,
                "created_at": branch["created_at"],
                "updated_at": branch["created_at"],
            }
        ],
        "databases": [
            {
                "id": 1,
                "branch_id": branch["id"],
                "name": logical,
                "owner_name": project.pg["user"],
                "created_at": branch["created_at"],
                "updated_at": branch["created_at"],
            }
        ],
    }
    if endpoint:
        uri = project.database_uri(branch["database"], pooled=False)
        answer["connection_uris"] = [
            {
                "connection_uri": uri,
                "connection_parameters": {
                    "database": logical,
                    "password": project.pg["password"],
                    "role": project.pg["user"],
                    "host": branch["host"],
                    "pooler_host": branch["host"],
                },
            }
        ]
    return answer
