"""Names a revision file uses but never defines or imports, found without running it.

Importing a revision only runs its top level; a name missing inside `upgrade()` (such as
`sqlmodel` in a type Alembic rendered by its module path) fails only when the migration
runs, against the database. The compiler's own symbol tables (`symtable`) resolve every
name the way Python will: parameters, locals, comprehension variables and enclosing
functions' names are defined; what is left resolves to the module, where it must be
imported, assigned, defined or declared `global` and assigned somewhere, or be a builtin.
"""

from __future__ import annotations

import ast
import builtins
import symtable
from importlib.util import decode_source
from pathlib import Path

# Set on every module or class body by Python itself, not bound by any statement.
IMPLICIT = frozenset(
    {"__file__", "__cached__", "__builtins__", "__annotations__", "__module__", "__qualname__"}
    | {"__class__"}  # in a method that calls super()
)
DEFINED_EVERYWHERE = frozenset(dir(builtins)) | IMPLICIT


def undefined_names(source: str, filename: str = "<revision>") -> list[tuple[str, int | None]]:
    """(name, first line using it) for each name that would raise NameError when reached,
    in order of appearance. Nothing for a module with `from x import *`: any name may come
    from it. A syntax error raises SyntaxError."""
    tree = ast.parse(source, filename)
    if any(
        isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
        for node in ast.walk(tree)
    ):
        return []
    module = symtable.symtable(source, filename, "exec")
    bound = {s.get_name() for s in module.get_symbols() if s.is_assigned() or s.is_imported()}
    used: set[str] = set()
    for table in _tables(module):
        for symbol in table.get_symbols():
            if symbol.is_declared_global() and (symbol.is_assigned() or symbol.is_imported()):
                bound.add(symbol.get_name())
            if symbol.is_referenced() and (table is module or _module_level(symbol)):
                used.add(symbol.get_name())
    missing = used - bound - DEFINED_EVERYWHERE
    lines = _first_lines(tree, missing)
    return sorted(((name, lines.get(name)) for name in missing), key=_order)


def problem(path: Path) -> str | None:
    """One line naming the file, the undefined names and their lines; None if none."""
    found = undefined_names(decode_source(path.read_bytes()), str(path))
    if not found:
        return None
    names = ", ".join(name for name, _ in found)
    lines = sorted({line for _, line in found if line is not None})
    where = f" (line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines))})" if lines else ""
    them = "them" if len(found) > 1 else "it"
    return f"{path.name} uses {names} but never defines or imports {them}{where}"


def _tables(table: symtable.SymbolTable):
    yield table
    for child in table.get_children():
        yield from _tables(child)


def _module_level(symbol: symtable.Symbol) -> bool:
    """Whether a function's or class body's name is looked up in the module's namespace.

    A name bound where it is used is local: is_global() alone would call it global in a
    function named `top` (Python 3.11 takes any table of that name for the module's).
    """
    if symbol.is_declared_global():
        return True
    bound_here = symbol.is_parameter() or symbol.is_assigned() or symbol.is_imported()
    return symbol.is_global() and not bound_here


def _first_lines(tree: ast.AST, names: set[str]) -> dict[str, int]:
    lines: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names:
            lines[node.id] = min(node.lineno, lines.get(node.id, node.lineno))
    return lines


def _order(item: tuple[str, int | None]) -> tuple[float, str]:
    name, line = item
    return (line if line is not None else float("inf"), name)
