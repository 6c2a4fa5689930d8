"""The directive table's machinery, as nginx's ``ngx_command_t`` and
``ngx_conf_handler``: a ``Command`` row names a directive, the contexts it may
appear in, how many arguments it takes, the function that parses it and the
field of the model its value sets. ``Table`` checks the rows when it is
built (at import: a row without a parser, an unknown field or a parser whose
type does not fit its field fails there) and reads blocks with them.

The table itself is in builder.py. A block is read into a ``Draft``: a
mutable, typed mirror of the frozen model value the block becomes.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, get_args, get_origin, get_type_hints

from proxy.config.errors import ConfigError, quote
from proxy.config.parser import Directive


class Context(enum.Flag):
    """Where a directive may appear: the top of the file, or a block."""

    MAIN = enum.auto()
    ADMIN = enum.auto()
    UPSTREAM = enum.auto()
    SERVER = enum.auto()
    LOCATION = enum.auto()


class Arity(enum.Flag):
    """How many arguments a directive takes, as nginx's NGX_CONF_NOARGS,
    NGX_CONF_TAKE1 ... bits: a directive accepts a count whose bit is set."""

    NOARGS = 1
    TAKE1 = 2
    TAKE2 = 4
    MORE = 8  # three or more; only as part of ONEMORE and ANY
    TAKE12 = TAKE1 | TAKE2
    ONEMORE = TAKE1 | TAKE2 | MORE  # nginx's NGX_CONF_1MORE
    ANY = NOARGS | ONEMORE
    FLAG = TAKE1  # on|off: one argument, which the parser (``flag``) checks

    def takes(self, count: int) -> bool:
        bit = (Arity.NOARGS, Arity.TAKE1, Arity.TAKE2)[count] if count < 3 else Arity.MORE
        return bit in self


# A directive's parser: (the directive, the draft of the block it is in) ->
# the value for the row's field. It raises ConfigError for a bad value.
Parse = Callable[[Directive, Any], object]


@dataclass(frozen=True, slots=True)
class Command:
    """One row of the table.

    ``field`` names the draft's (and so the model's) field the parsed value
    sets: appended when the field is a list, ``a.b`` for field ``b`` of the
    frozen value in field ``a``. ``multiple``: the directive may repeat (else
    a second one is "duplicate"). ``phase``: 0 parses the directive where it
    stands; 1, 2 once the block was read and checked as a whole, phase by
    phase, each in file order (``Draft.finish``), which is when those values
    are checked (so the first error of a file with several is always the
    same one).
    """

    name: str
    contexts: Context
    arity: Arity
    parse: Parse
    field: str
    block: bool = False
    multiple: bool = False
    phase: int = 0


@dataclass(slots=True, kw_only=True)
class Draft:
    """A block being read: the fields its directives set, and the
    directives left for a later phase."""

    later: list[tuple[Command, Directive]] = field(default_factory=list)

    def apply(self, command: Command, d: Directive) -> None:
        """Parse ``d`` and set the command's field."""
        value = command.parse(d, self)
        owner_name, _, name = command.field.rpartition(".")
        owner: Any = getattr(self, owner_name) if owner_name else self
        current = getattr(owner, name)
        if isinstance(current, list):
            current.append(value)
        elif owner_name:
            setattr(self, owner_name, replace(owner, **{name: value}))
        else:
            setattr(self, name, value)

    def finish(self) -> None:
        """Parse the directives left for later, phase by phase."""
        for command, d in sorted(self.later, key=lambda later: later[0].phase):
            self.apply(command, d)
        self.later.clear()


def error(d: Directive, message: str) -> ConfigError:
    return ConfigError(d.file, d.line, message)


def keep(d: Directive, _: object) -> Directive:
    """The parser of a directive checked together with others of its kind
    when its block is built (as nginx's merge functions): the directive."""
    return d


class Table:
    """The rows, indexed by (context, name); ``drafts`` gives each
    context's draft class, whose fields the rows must name."""

    def __init__(self, rows: Iterable[Command], drafts: Mapping[Context, type[Draft]]) -> None:
        self.rows = tuple(rows)
        self._index: dict[tuple[Context, str], Command] = {}
        fields = _Fields()
        for row in self.rows:
            for context in row.contexts:
                _check_row(row, drafts[context], fields)
                if (context, row.name) in self._index:
                    raise ValueError(f"{row.name!r} has two rows in {context.name}")
                self._index[context, row.name] = row
        self._names = frozenset(row.name for row in self.rows)

    def __iter__(self) -> Iterator[Command]:
        return iter(self.rows)

    def read(self, context: Context, directives: Sequence[Directive], draft: Draft) -> None:
        """Check and parse a block's directives into ``draft`` (the later
        phases wait for ``draft.finish()``)."""
        seen: set[str] = set()
        for d in directives:
            command = self.command(context, d, seen)
            if command.phase:
                draft.later.append((command, d))
            else:
                draft.apply(command, d)

    def command(self, context: Context, d: Directive, seen: set[str]) -> Command:
        """``d``'s row after the checks nginx's ngx_conf_handler also makes,
        in its order: name, context, block or not, argument count, and
        uniqueness (``seen``: the names met so far in the block)."""
        command = self._index.get((context, d.name))
        if command is None:
            if d.name in self._names:
                raise error(d, f"{quote(d.name)} directive is not allowed here")
            raise error(d, f"unknown directive {quote(d.name)}")
        if command.block and d.block is None:
            raise error(d, f'directive {quote(d.name)} has no opening "{{"')
        if not command.block and d.block is not None:
            raise error(d, f'directive {quote(d.name)} is not terminated by ";"')
        if not command.arity.takes(len(d.args)):
            raise error(d, f"invalid number of arguments in {quote(d.name)} directive")
        if not command.multiple and d.name in seen:
            raise error(d, f"{quote(d.name)} directive is duplicate")
        seen.add(d.name)
        return command


class _Fields(dict[type, dict[str, Any]]):
    """A dataclass's field types, by class: each read once."""

    def __missing__(self, cls: type) -> dict[str, Any]:
        hints = self[cls] = get_type_hints(cls)
        return hints


def _check_row(row: Command, draft: type[Draft], fields: _Fields) -> None:
    """A row must have a parser whose declared result fits the field it
    names in ``draft``: caught at import, not when a file uses it."""
    where = f"directive {row.name!r} ({draft.__name__})"
    if not callable(row.parse):
        raise TypeError(f"{where}: no parser")
    owner_name, _, name = row.field.rpartition(".")
    owner: type = draft
    if owner_name:
        owner = fields[draft].get(owner_name, type(None))
    slot = fields[owner].get(name) if hasattr(owner, "__dataclass_fields__") else None
    if slot is None:
        raise TypeError(f"{where}: no field {row.field!r}")
    result = get_type_hints(row.parse).get("return")
    if result is None or not _fits(result, slot):
        raise TypeError(f"{where}: its parser gives {result}, field {row.field!r} holds {slot}")


def _fits(result: object, slot: object) -> bool:
    if get_origin(slot) is list:
        (slot,) = get_args(slot)  # the value is appended
    if result == slot:
        return True
    given = set(get_args(result)) if isinstance(result, types.UnionType) else {result}
    held = set(get_args(slot)) if isinstance(slot, types.UnionType) else {slot}
    return given <= held
