"""SQL injection: hostile attribute values are stored verbatim, and no SQL is built from input.

The payloads go through the real OTLP/HTTP exporter into the processor, and are read back exactly
from the columns and JSON they land in. The second test reads the package source so that SQL built
by f-strings or %-formatting cannot come back unnoticed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from export_support import exporting, http_exporter
from layouts import trace_spans
from server_support import base_url, fetch, running

from otel_chatbot.store.span_blocks import StoredSpan

PACKAGE = Path(__file__).resolve().parent.parent / "otel_chatbot"
PAYLOADS = [
    "'); DROP TABLE spans;--",
    "x' OR '1'='1",
    "$$; DELETE FROM chat_turns; $$",
    "$tag$ $$ $tag$",
    "back\\slash \\' \\\\ \\x00 \\n",
    "%s %(user)s {} {0} %%",
    "\"quoted\" identifier\";",
    "E'\\047' U&'\\0041'",
    "-- comment /* block */",
    "ünïcødé ✓ 𝄞 \u202e",
]
NUL = "before\x00after"


def _turn_spans(url: str, turn_id: str) -> list[StoredSpan]:
    """The stored spans of a turn's trace, read back through the store's reader (either layout)."""
    ((trace,),) = fetch(url, "SELECT trace_id FROM chat_turns WHERE turn_id = %s", (turn_id,))
    return trace_spans(url, str(trace))


def test_hostile_values_are_stored_verbatim(database_url: str) -> None:
    with running(database_url) as processor, \
            exporting(http_exporter(f"{base_url(processor)}/v1/traces"), resource={
                "service.name": PAYLOADS[0], "deployment": PAYLOADS[2]}) as tracer:
        for i, payload in enumerate(PAYLOADS):
            attributes = {"chat.turn.id": f"turn-{i}", "session.id": payload, "user.id": payload,
                          "input.value": payload, "output.value": payload + " reply",
                          "chat.source": "api", "custom.payload": payload, payload: "as a key"}
            with tracer.start_as_current_span(payload, attributes=attributes):
                pass
        with tracer.start_as_current_span("nul", attributes={"chat.turn.id": "turn-nul", "session.id": "s",
                                                              "input.value": NUL, "custom.nul": NUL}):
            pass

    tables = ("SELECT to_regclass('spans') IS NOT NULL, to_regclass('span_blocks') IS NOT NULL, "
              "to_regclass('chat_turns') IS NOT NULL")
    assert fetch(database_url, tables) == [(True, True, True)]
    for i, payload in enumerate(PAYLOADS):
        span = [(s.name, s.service, s.attributes.get("custom.payload"), s.attributes.get(payload),
                 s.resource.get("deployment")) for s in _turn_spans(database_url, f"turn-{i}")]
        assert span == [(payload, PAYLOADS[0], payload, "as a key", PAYLOADS[2])], payload
        turn = fetch(database_url, "SELECT session_id, user_id, user_message, bot_response FROM chat_turns "
                                   "WHERE turn_id = %s", (f"turn-{i}",))
        assert turn == [(payload, payload, payload, payload + " reply")], payload
    # Postgres text cannot hold NUL: the processor writes U+FFFD in its place, the rest is kept.
    nul = [(fetch(database_url, "SELECT user_message FROM chat_turns WHERE turn_id = 'turn-nul'")[0][0],
            s.attributes.get("custom.nul")) for s in _turn_spans(database_url, "turn-nul")]
    assert nul == [("before\ufffdafter", "before\ufffdafter")]
    assert fetch(database_url, "SELECT count(*) FROM chat_turns") == [(len(PAYLOADS) + 1,)]


# SQL keywords that start a statement or clause: a formatted string containing one is SQL.
_SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|COPY|WHERE|VALUES|FROM|GRANT|"
                  r"TRUNCATE|LOCK)\b")
# MODULE_CONSTANTS (and _PRIVATE ones): names fixed in the source, such as table and column lists.
_CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9_]*$")
# Formatting that does take a variable, each checked by hand: (file, function) → why it is safe.
ALLOWED = {
    ("store/copyrows.py", "_copy_statement"): "table and columns are the module's column tuples and "
                                              "partition names made by partitions.partition_name",
    ("store/evaluations.py", "turn_candidates"): "condition is TurnFilter.where(): fixed clauses, "
                                                 "values bound",
    ("store/evaluations.py", "session_candidates"): "condition is TurnFilter.where(), as above",
    ("store/turn_sql.py", "_first_by"): "called at import with the module's column names",
}


def _only_constants(node: ast.AST) -> bool:
    """True when every name in ``node`` is a module constant (no value can come from input)."""
    return all(_CONSTANT.match(n.id) for n in ast.walk(node) if isinstance(n, ast.Name))


def _literal_text(node: ast.AST) -> str:
    """The string literals in ``node``, except those inside psycopg.sql composition (sql.SQL(...),
    whose placeholders take only sql.Identifier/sql.Literal objects, never plain strings)."""
    if _is_sql_composition(node):
        return ""
    return "".join(n.value for n in ast.walk(node)
                   if isinstance(n, ast.Constant) and isinstance(n.value, str))


def _is_sql_composition(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "SQL"
               for n in ast.walk(node))


def _formatted_sql(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, kind, enclosing function) of SQL text formatted with anything but module constants."""
    found = []
    scopes = {child: node.name for node in ast.walk(tree)
              if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) for child in ast.walk(node)}
    for node in ast.walk(tree):
        kind = None
        if isinstance(node, ast.JoinedStr) and _SQL.search(_literal_text(node)):
            values = [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
            if not all(_only_constants(v) for v in values):
                kind = "f-string"
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add) \
                and _SQL.search(_literal_text(node.left)) and not _only_constants(node.right):
            kind = "% or + on a SQL string"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "format" and _SQL.search(_literal_text(node.func.value)) \
                and not all(_only_constants(a) for a in [*node.args, *(k.value for k in node.keywords)]):
            kind = "str.format"
        # Statements formatted at import time (outside any function) cannot hold request input.
        if kind is not None and node in scopes:
            found.append((getattr(node, "lineno", 0), kind, scopes[node]))
    return found


def test_no_sql_is_built_by_string_formatting() -> None:
    """Values go as bound parameters; identifiers through psycopg.sql (sql.Identifier, sql.SQL.format)
    or module constants. What is formatted with anything else must be listed in ALLOWED, with why."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for line, kind, scope in _formatted_sql(ast.parse(path.read_text(), str(path))):
            if (relative, scope) not in ALLOWED:
                offenders.append(f"{relative}:{line}: {kind} in {scope}")
    assert offenders == []


def test_the_checker_finds_what_it_should() -> None:
    bad = ast.parse('def handler(conn, value):\n'
                    '    conn.execute(f"DELETE FROM spans WHERE id = {value}")\n'
                    '    conn.execute("SELECT * FROM t WHERE a = \'%s\'" % value)\n'
                    '    conn.execute("UPDATE t SET a = {}".format(value))\n')
    assert [kind for _, kind, _ in _formatted_sql(bad)] == ["f-string", "% or + on a SQL string",
                                                            "str.format"]
    good = ast.parse('QUERY = f"SELECT {COLUMNS} FROM {_TABLE}"\n'
                     'def handler(conn, value, name):\n'
                     '    conn.execute("SELECT * FROM t WHERE a = %s", (value,))\n'
                     '    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))\n'
                     '    conn.execute(f"SELECT {_COLUMNS} FROM t")\n')
    assert [kind for _, kind, _ in _formatted_sql(good)] == []
