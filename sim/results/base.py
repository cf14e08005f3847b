"""Shared pieces of the result model: the schema error, a JSON-object reader and ``Check``.

Every result kind (:mod:`sim.results.sim`, ``profile``, ``scale``, ``gate``, ``self_test``) is a
frozen dataclass with ``to_json() -> dict`` and ``from_json(dict)``; ``from_json`` validates
through :class:`Reader`, whose errors name the offending key (``peers[0].converged: expected
true/false``). This package imports no producer (``sim.harness``, ``sim.gate``,
``sim.analysis``) and nothing of ``core``: the report reads result files with it alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Check", "JsonDict", "Reader", "SchemaError", "all_ok", "schema_id"]

JsonDict = dict[str, Any]


def schema_id(kind: str, version: int = 1) -> str:
    """The versioned schema id written as ``"schema"`` in a result's JSON: ``nbstream/sim/1``."""
    return f"nbstream/{kind}/{version}"


class SchemaError(ValueError):
    """A result's JSON does not match its schema (the message names the offending key)."""


class Reader:
    """A JSON object with typed accessors whose errors name the offending key."""

    __slots__ = ("d", "where")

    def __init__(self, value: Any, where: str = "") -> None:
        if not isinstance(value, Mapping):
            raise SchemaError(f"{where or '$'}: expected an object")
        self.d: Mapping[str, Any] = value
        self.where = where

    def at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        return key in self.d

    def present(self, key: str) -> bool:
        """The key is there and not null."""
        return self.d.get(key) is not None

    def raw(self, key: str) -> Any:
        if key not in self.d:
            raise SchemaError(f"{self.where or '$'}: missing {key!r}")
        return self.d[key]

    # scalars ---------------------------------------------------------------------------
    def number(self, key: str) -> float:
        return number(self.raw(key), self.at(key))

    def opt_number(self, key: str, *, required: bool = False) -> float | None:
        """The number at *key*, or None when null (or absent, unless *required*)."""
        value = self.raw(key) if required else self.d.get(key)
        return None if value is None else number(value, self.at(key))

    def integer(self, key: str) -> int:
        return integer(self.raw(key), self.at(key))

    def opt_integer(self, key: str, *, required: bool = False) -> int | None:
        value = self.raw(key) if required else self.d.get(key)
        return None if value is None else integer(value, self.at(key))

    def text(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise SchemaError(f"{self.at(key)}: expected a string")
        return value

    def opt_text(self, key: str, *, required: bool = False) -> str | None:
        value = self.raw(key) if required else self.d.get(key)
        return None if value is None else self.text(key)

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise SchemaError(f"{self.at(key)}: expected true/false")
        return value

    def opt_flag(self, key: str) -> bool | None:
        return None if self.d.get(key) is None else self.flag(key)

    # containers ------------------------------------------------------------------------
    def child(self, key: str) -> Reader:
        return Reader(self.raw(key), self.at(key))

    def items(self, key: str) -> list[Any]:
        value = self.raw(key)
        if not isinstance(value, list):
            raise SchemaError(f"{self.at(key)}: expected a list")
        return value

    def children(self, key: str) -> list[Reader]:
        return [Reader(v, f"{self.at(key)}[{i}]") for i, v in enumerate(self.items(key))]

    def entries(self, key: str) -> list[tuple[str, Reader]]:
        """The members of the object at *key*, each as an object."""
        obj = self.child(key)
        return [(name, obj.child(name)) for name in obj.d]

    def numbers(self, key: str) -> tuple[float, ...]:
        return tuple(number(v, f"{self.at(key)}[{i}]") for i, v in enumerate(self.items(key)))

    def integers(self, key: str) -> tuple[int, ...]:
        return tuple(integer(v, f"{self.at(key)}[{i}]") for i, v in enumerate(self.items(key)))

    def texts(self, key: str) -> tuple[str, ...]:
        out = []
        for i, v in enumerate(self.items(key)):
            if not isinstance(v, str):
                raise SchemaError(f"{self.at(key)}[{i}]: expected a string")
            out.append(v)
        return tuple(out)

    def pair(self, key: str) -> tuple[float, float]:
        values = self.numbers(key)
        if len(values) != 2:
            raise SchemaError(f"{self.at(key)}: expected [lo, hi]")
        return values[0], values[1]

    def int_map(self, key: str) -> dict[str, int]:
        obj = self.child(key)
        return {name: obj.integer(name) for name in obj.d}

    def number_map(self, key: str) -> dict[str, float]:
        obj = self.child(key)
        return {name: obj.number(name) for name in obj.d}

    def opt_number_map(self, key: str) -> dict[str, float | None]:
        obj = self.child(key)
        return {name: obj.opt_number(name) for name in obj.d}

    # the envelope ----------------------------------------------------------------------
    def envelope(self, commands: tuple[str, ...], schema: str) -> str:
        """Check ``"command"`` (one of *commands*) and ``"schema"`` (absent in files written
        before it existed, else exactly *schema*); returns the command."""
        command = self.text("command")
        if command not in commands:
            expected = " or ".join(repr(c) for c in commands)
            raise SchemaError(f"{self.at('command')}: expected {expected}, got {command!r}")
        if "schema" in self.d:
            found = self.text("schema")
            if found != schema:
                raise SchemaError(f"{self.at('schema')}: expected {schema!r}, got {found!r}")
        return command


def number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"{where}: expected a number")
    return float(value)


def integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(f"{where}: expected an integer")
    return value


@dataclass(frozen=True, slots=True)
class Check:
    """One named pass/fail judgement of a run (``{"name", "ok", "detail"}``)."""

    name: str
    ok: bool
    detail: str

    def to_json(self) -> JsonDict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}

    @classmethod
    def read(cls, r: Reader) -> Check:
        return cls(r.text("name"), r.flag("ok"), r.text("detail"))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Check:
        return cls.read(Reader(data))


def all_ok(checks: tuple[Check, ...], r: Reader) -> None:
    """Reject an ``"ok"`` that contradicts the checks it is derived from."""
    if "ok" in r.d:
        stated = r.flag("ok")
        if stated != all(c.ok for c in checks):
            raise SchemaError(f"{r.at('ok')}: {str(stated).lower()} contradicts the checks")
