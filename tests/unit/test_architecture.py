"""The import rules of STYLE.md, checked on the source so a violation fails the suite instead of a review:
pure domains, `shared/` below every service, and no service reaching into another."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("fastapi", "starlette", "aiokafka", "asyncpg", "uvicorn", "sse_starlette")
SERVICES = ("ingest", "dispatcher", "analytics", "simulator")


def imports_of(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def modules(*parts: str) -> list[Path]:
    return sorted(ROOT.joinpath(*parts).rglob("*.py"))


@pytest.mark.parametrize(
    "path",
    [*modules("services", "ingest", "domain"), *modules("services", "dispatcher", "domain"),
     *modules("services", "analytics", "domain"), *modules("shared", "contract"), *modules("shared", "jt808"),
     ROOT / "shared" / "errors.py"],
    ids=lambda p: str(p.relative_to(ROOT)),
)  # fmt: skip
def test_domain_and_contract_modules_import_no_web_kafka_or_database_client(path: Path) -> None:
    offending = [m for m in imports_of(path) if m.split(".")[0] in FRAMEWORKS]
    assert offending == [], f"{path.relative_to(ROOT)} imports {offending}"


@pytest.mark.parametrize("path", modules("shared"), ids=lambda p: str(p.relative_to(ROOT)))
def test_shared_imports_no_service(path: Path) -> None:
    assert [m for m in imports_of(path) if m.startswith("services")] == []


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_imports_another(service: str) -> None:
    others = tuple(f"services.{s}" for s in SERVICES if s != service)
    offending = {
        str(path.relative_to(ROOT)): found
        for path in modules("services", service)
        if (found := [m for m in imports_of(path) if m.startswith(others)])
    }
    assert offending == {}


_SQL_CALLS = frozenset(
    {"execute", "executemany", "fetch", "fetchrow", "fetchval", "prepare", "cursor", "copy_records_to_table"}
)


def _built_strings(tree: ast.AST) -> Iterator[ast.Call]:
    """Database calls whose statement is assembled at run time (an f-string, `%`, `+` or `.format`)."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
            continue
        if node.func.attr not in _SQL_CALLS:
            continue
        statement = node.args[0]
        if (
            (isinstance(statement, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in statement.values))
            or (isinstance(statement, ast.BinOp) and isinstance(statement.op, ast.Add | ast.Mod))
            or (isinstance(statement, ast.Call) and getattr(statement.func, "attr", None) == "format")
        ):
            yield node


@pytest.mark.parametrize("path", [*modules("shared"), *modules("services")], ids=lambda p: str(p.relative_to(ROOT)))
def test_sql_takes_values_only_through_parameters(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    offending = [f"line {call.lineno}" for call in _built_strings(tree)]
    assert offending == [], f"{path.relative_to(ROOT)} builds SQL from strings at {offending}: pass values as $n"
