"""The example application: FastAPI + SQLModel on the shared connection module.

    uvicorn app.main:app        (make serve)

The health routes, the metrics, and accounts with their projects. Each route takes
`SessionDep`: its transaction commits before the response is sent, so a failed COMMIT
is an error to the client, never a 200 for a lost write.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI, HTTPException
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from app.db import SessionDep, get_app_engine
from app.models import Account, Project
from neon_migrate.web.health import health_router
from neon_migrate.web.metrics import metrics_router
from neon_migrate.web.session import warn_unscoped_sessions
from neon_migrate.web.startup import OneLineStartupErrors


class AccountCreate(SQLModel):
    email: str = Field(max_length=320)
    display_name: str = Field(max_length=120)


class AccountRead(AccountCreate):
    id: int
    created_at: datetime


class ProjectCreate(SQLModel):
    name: str = Field(max_length=200)
    description: str | None = None


class ProjectRead(ProjectCreate):
    id: int
    account_id: int
    created_at: datetime
    updated_at: datetime


@asynccontextmanager
async def lifespan(app: FastAPI):
    # At boot, not at the first request: the pool's metrics exist from the first scrape,
    # and a missing or malformed URL stops the server here. No connection is opened yet.
    engine = get_app_engine()
    warn_unscoped_sessions(app)
    yield
    engine.dispose()


app = FastAPI(title="neon-migrate example", lifespan=lifespan)
app.add_middleware(OneLineStartupErrors)  # a configuration error at startup: one line
app.include_router(health_router())  # GET /health/db (readiness), GET /health/db/pool
app.include_router(metrics_router())  # GET /metrics


def account_or_404(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise HTTPException(404, f"no account {account_id}")
    return account


@app.post("/accounts", status_code=201)
def create_account(body: AccountCreate, session: SessionDep) -> AccountRead:
    account = Account.model_validate(body)
    session.add(account)
    try:
        session.flush()  # INSERT … RETURNING: id and created_at come back in one round trip
    except IntegrityError:
        raise HTTPException(409, f"an account with email {body.email} exists") from None
    return account


@app.get("/accounts/{account_id}")
def read_account(account_id: int, session: SessionDep) -> AccountRead:
    return account_or_404(session, account_id)


@app.post("/accounts/{account_id}/projects", status_code=201)
def create_project(account_id: int, body: ProjectCreate, session: SessionDep) -> ProjectRead:
    account_or_404(session, account_id)
    project = Project.model_validate(body, update={"account_id": account_id})
    session.add(project)
    try:
        session.flush()
    except IntegrityError:
        raise HTTPException(409, f"the account has a project named {body.name}") from None
    return project


@app.get("/accounts/{account_id}/projects")
def list_projects(account_id: int, session: SessionDep) -> list[ProjectRead]:
    account_or_404(session, account_id)
    query = select(Project).where(Project.account_id == account_id).order_by(Project.id)
    return session.exec(query).all()
