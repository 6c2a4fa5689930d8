"""The directive table (proxy/config/builder.py TABLE, proxy/config/commands.py):
its rows are checked when it is built, so a broken row fails at import, and
it reads blocks with nginx's generic checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from proxy.config.builder import TABLE
from proxy.config.commands import Arity, Command, Context, Draft, Table, keep
from proxy.config.errors import ConfigError
from proxy.config.model import ClientConnection
from proxy.config.parser import Directive


@dataclass(slots=True, kw_only=True)
class _Draft(Draft):
    count: int = 0
    maybe: float | None = None
    names: list[str] = field(default_factory=list)
    kept: list[Directive] = field(default_factory=list)
    connection: ClientConnection = field(default_factory=ClientConnection)


def _count(d: Directive, _: object) -> int:
    return int(d.args[0])


def _name(d: Directive, _: object) -> str:
    return d.args[0]


def _seconds(d: Directive, _: object) -> float:
    return float(d.args[0])


def _table(*rows: Command) -> Table:
    return Table(rows, drafts={Context.MAIN: _Draft, Context.SERVER: _Draft})


def test_a_row_needs_a_parser() -> None:
    with pytest.raises(TypeError, match="no parser"):
        _table(Command("x", Context.MAIN, Arity.TAKE1, None, "count"))  # type: ignore[arg-type]


def test_a_row_names_a_field_of_its_contexts_draft() -> None:
    with pytest.raises(TypeError, match="no field 'nope'"):
        _table(Command("x", Context.MAIN, Arity.TAKE1, _count, "nope"))
    with pytest.raises(TypeError, match="no field 'connection.nope'"):
        _table(Command("x", Context.MAIN, Arity.TAKE1, _seconds, "connection.nope"))


def test_a_parser_gives_what_its_field_holds() -> None:
    with pytest.raises(TypeError, match="its parser gives"):
        _table(Command("x", Context.MAIN, Arity.TAKE1, _name, "count"))
    with pytest.raises(TypeError, match="its parser gives"):
        _table(Command("x", Context.MAIN, Arity.TAKE1, _count, "names"))
    # A float fits "float | None"; a str is appended to "list[str]"; a
    # dotted field is one of a frozen value's.
    _table(
        Command("a", Context.MAIN, Arity.TAKE1, _seconds, "maybe"),
        Command("b", Context.MAIN, Arity.TAKE1, _name, "names"),
        Command("c", Context.MAIN, Arity.TAKE1, _seconds, "connection.idle_timeout"),
        Command("d", Context.MAIN, Arity.TAKE1, keep, "kept"),
    )


def test_one_row_per_name_and_context() -> None:
    with pytest.raises(ValueError, match="two rows"):
        _table(
            Command("x", Context.MAIN, Arity.TAKE1, _count, "count"),
            Command("x", Context.MAIN | Context.SERVER, Arity.TAKE1, _count, "count"),
        )


def _d(name: str, *args: str, block: tuple[Directive, ...] | None = None) -> Directive:
    return Directive(name, args, "f.conf", 3, block)


def test_reading_sets_fields_in_phases() -> None:
    table = _table(
        Command("count", Context.MAIN, Arity.TAKE1, _count, "count"),
        Command("name", Context.MAIN, Arity.ONEMORE, _name, "names", multiple=True, phase=2),
        Command("idle", Context.MAIN, Arity.TAKE1, _seconds, "connection.idle_timeout", phase=1),
    )
    draft = _Draft()
    table.read(
        Context.MAIN,
        [_d("name", "a"), _d("count", "2"), _d("name", "b", "c"), _d("idle", "1.5")],
        draft,
    )
    assert (draft.count, draft.names, draft.connection.idle_timeout) == (2, [], 600.0)
    assert [d.name for _, d in draft.later] == ["name", "name", "idle"]
    draft.finish()
    assert (draft.names, draft.connection.idle_timeout, draft.later) == (["a", "b"], 1.5, [])


@pytest.mark.parametrize(
    ("directive", "message"),
    [
        (_d("nope"), 'unknown directive "nope"'),
        (_d("srv", "1"), '"srv" directive is not allowed here'),
        (_d("count", "1", block=()), 'directive "count" is not terminated by ";"'),
        (_d("blk"), 'directive "blk" has no opening "{"'),
        (_d("count"), 'invalid number of arguments in "count" directive'),
        (_d("count", "1", "2"), 'invalid number of arguments in "count" directive'),
    ],
)
def test_generic_checks(directive: Directive, message: str) -> None:
    table = _table(
        Command("count", Context.MAIN, Arity.TAKE1, _count, "count"),
        Command("srv", Context.SERVER, Arity.TAKE1, _count, "count"),
        Command("blk", Context.MAIN, Arity.NOARGS, keep, "kept", block=True),
    )
    with pytest.raises(ConfigError) as e:
        table.read(Context.MAIN, [directive], _Draft())
    assert str(e.value) == f"f.conf:3: {message}"


def test_duplicates_unless_multiple() -> None:
    table = _table(
        Command("count", Context.MAIN, Arity.TAKE1, _count, "count"),
        Command("name", Context.MAIN, Arity.TAKE1, _name, "names", multiple=True),
    )
    table.read(Context.MAIN, [_d("name", "a"), _d("name", "b")], _Draft())
    with pytest.raises(ConfigError, match='"count" directive is duplicate'):
        table.read(Context.MAIN, [_d("count", "1"), _d("count", "2")], _Draft())


@pytest.mark.parametrize(
    ("arity", "counts"),
    [
        (Arity.NOARGS, {0}),
        (Arity.TAKE1, {1}),
        (Arity.FLAG, {1}),
        (Arity.TAKE12, {1, 2}),
        (Arity.NOARGS | Arity.TAKE1, {0, 1}),
        (Arity.NOARGS | Arity.TAKE12, {0, 1, 2}),
        (Arity.ONEMORE, {1, 2, 3, 4, 9}),
        (Arity.ANY, {0, 1, 2, 3, 4, 9}),
    ],
)
def test_arity(arity: Arity, counts: set[int]) -> None:
    assert {n for n in range(10) if arity.takes(n)} == counts | (
        {5, 6, 7, 8} if 9 in counts else set()
    )


def test_the_table_knows_each_context() -> None:
    names = {(str(c.name), row.name) for row in TABLE for c in row.contexts}
    assert ("ADMIN", "listen") in names and ("SERVER", "listen") in names
    assert ("MAIN", "server") in names and ("UPSTREAM", "server") in names
    assert {c for c, _ in names} == {c.name for c in Context}
