"""What a statement of the pending SQL does, as PostgreSQL's own parser reads it.

The lint's safety rules decide from this: which statements open or end a transaction,
set lock_timeout, change the schema or the data, run CONCURRENTLY, take an ACCESS
EXCLUSIVE lock on which table, drop or empty which table. pglast wraps libpg_query, the
server's grammar compiled as a library, so `WITH u AS (UPDATE ...) SELECT ...` is a data
change, a quoted or schema-qualified name is a name, and a keyword inside a string or a
`$$` body is not a keyword: the ways a regular expression over the text gets it wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pglast import parse_sql
from pglast.enums import ObjectType, TransactionStmtKind
from pglast.parser import ParseError

_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")  # an identifier that needs no quotes
ACCESS_EXCLUSIVE = 8  # LockStmt's mode for LOCK TABLE ... IN ACCESS EXCLUSIVE MODE

_DML = {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "CopyStmt"}
_NOT_DDL = {"SelectStmt", "TransactionStmt", "VariableSetStmt", "VariableShowStmt", "DoStmt",
            "ExplainStmt", "LockStmt", "CallStmt", "CheckPointStmt", *_DML}  # fmt: skip
_BEGIN = {TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START}
_END = {TransactionStmtKind.TRANS_STMT_COMMIT, TransactionStmtKind.TRANS_STMT_ROLLBACK}


class Unreadable(Exception):
    """The parser cannot read the statement; the message is the parser's."""


@dataclass(frozen=True)
class Reading:
    begins: bool = False
    ends: bool = False
    sets_lock_timeout: bool = False
    sets: bool = False  # any SET
    ddl: bool = False
    dml: bool = False
    concurrently: bool = False
    exclusive_on: tuple[str, ...] = ()  # tables it locks ACCESS EXCLUSIVE (ALTER, DROP, ...)
    drops: tuple[str, ...] = field(default=())  # tables it drops or empties


def read(statement: str) -> Reading:
    """One statement (as lint.statements() splits them), as the parser reads it."""
    try:
        parsed = parse_sql(statement)
    except ParseError as exc:
        raise Unreadable(str(exc)) from None
    if len(parsed) != 1:
        raise Unreadable(f"{len(parsed)} statements where one was expected")
    node = parsed[0].stmt
    kind = type(node).__name__
    if kind == "TransactionStmt":
        return Reading(begins=node.kind in _BEGIN, ends=node.kind in _END)
    if kind == "VariableSetStmt":
        return Reading(sets=True, sets_lock_timeout=node.name == "lock_timeout")
    dropped = _dropped(node, kind)
    return Reading(
        ddl=kind not in _NOT_DDL,
        dml=kind in _DML or _changes_data_in_a_cte(node),
        concurrently=_concurrently(node, kind),
        exclusive_on=_exclusive(node, kind) + tuple(t for t in dropped if kind == "DropStmt"),
        drops=dropped,
    )


def _name(range_var) -> str:
    """schema.table as SQL writes it, quoted where needed (to_regclass() reads it back)."""
    return ".".join(_quoted(p) for p in (range_var.schemaname, range_var.relname) if p)


def _quoted(identifier: str) -> str:
    if _PLAIN.match(identifier):
        return identifier
    return '"' + identifier.replace('"', '""') + '"'


def _dropped(node, kind: str) -> tuple[str, ...]:
    if kind == "TruncateStmt":
        return tuple(_name(r) for r in node.relations)
    if kind == "DropStmt" and node.removeType == ObjectType.OBJECT_TABLE:
        return tuple(".".join(_quoted(part.sval) for part in name) for name in node.objects)
    return ()


def _exclusive(node, kind: str) -> tuple[str, ...]:
    if kind == "AlterTableStmt" and node.relation is not None:
        return (_name(node.relation),)
    if kind == "TruncateStmt":
        return tuple(_name(r) for r in node.relations)
    if kind == "RenameStmt" and node.relation is not None:
        return (_name(node.relation),)
    if kind == "LockStmt" and node.mode == ACCESS_EXCLUSIVE:
        return tuple(_name(r) for r in node.relations)
    return ()


def _concurrently(node, kind: str) -> bool:
    if kind in ("IndexStmt", "DropStmt", "RefreshMatViewStmt"):
        return bool(node.concurrent)
    if kind == "ReindexStmt":
        return any(p.defname == "concurrently" for p in node.params or ())
    return False


def _changes_data_in_a_cte(node) -> bool:
    ctes = getattr(getattr(node, "withClause", None), "ctes", None) or ()
    return any(type(cte.ctequery).__name__ in _DML for cte in ctes)
