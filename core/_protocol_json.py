"""Private JSON and validation helpers shared by the protocol messages.

Strict UTF-8 JSON decoding (:func:`_loads`: no NaN/Infinity, precise error messages) and compact
encoding (:func:`_dumps`), typed field accessors (``_str``, ``_opt_str``, ``_int``, ``_opt_int``,
``_b64``) that raise the caller's :class:`~core.errors.ProtocolError` subclass naming the field,
and the small error-message helpers (``_quoted``, ``_fail``). Also home of
:data:`MAX_JSON_INT`, re-exported by :mod:`core.protocol`. No I/O and no :mod:`asyncio` import.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any, NoReturn

from core.errors import LocalProtocolError, ProtocolError
from core.json_values import json_type

MAX_JSON_INT = 2**53 - 1
"""Largest integer any message field may carry (exactly representable in every JSON reader)."""


# =========================================================================== JSON helpers
class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> NoReturn:
    raise _NonFinite(name)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


_ExcType = type[ProtocolError]


def _loads(payload: bytes, what: str, exc: _ExcType) -> Any:
    """Decode a UTF-8 JSON payload; every failure becomes ``exc`` with a precise message."""
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as e:
        raise exc(f"{what} is not UTF-8: {e.reason} at byte {e.start}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float)
    except json.JSONDecodeError as e:
        raise exc(
            f"{what} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno} (char {e.pos})"
        ) from None
    except _NonFinite as e:
        raise exc(f"{what} contains the non-finite number {e}, which JSON does not allow") from None
    except RecursionError:
        raise exc(f"{what} is nested too deeply") from None
    except ValueError as e:  # e.g. an integer literal longer than the interpreter's digit limit
        raise exc(f"{what} is not acceptable JSON: {e}") from None


def _dumps(obj: Mapping[str, Any], what: str) -> bytes:
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise LocalProtocolError(f"cannot encode {what} as JSON: {e}") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (e.g. undecodable file-name bytes): escape them so the output is
        # still valid UTF-8 JSON.
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _object(value: Any, what: str, exc: _ExcType) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise exc(f"{what} must be a JSON object, got {json_type(value)}")
    return value


def _fail(exc: _ExcType, message: str) -> NoReturn:
    raise exc(message)


def _str(obj: Mapping[str, Any], key: str, what: str, exc: _ExcType) -> str:
    if key not in obj:
        _fail(exc, f'{what} has no "{key}"')
    value = obj[key]
    if not isinstance(value, str):
        _fail(exc, f'{what} "{key}" must be a string, got {json_type(value)}')
    return value


def _opt_str(obj: Mapping[str, Any], key: str, what: str, exc: _ExcType) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        _fail(exc, f'{what} "{key}" must be a string or absent, got {json_type(value)}')
    return value


def _int(obj: Mapping[str, Any], key: str, what: str, exc: _ExcType) -> int:
    if key not in obj:
        _fail(exc, f'{what} has no "{key}"')
    return _check_int(obj[key], key, what, exc)


def _opt_int(obj: Mapping[str, Any], key: str, what: str, exc: _ExcType) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    return _check_int(value, key, what, exc)


def _check_int(value: Any, key: str, what: str, exc: _ExcType) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(exc, f'{what} "{key}" must be an integer, got {json_type(value)}')
    if value < 0:
        _fail(exc, f'{what} "{key}" must be >= 0, got {value}')
    if value > MAX_JSON_INT:
        _fail(exc, f'{what} "{key}" must be <= 2**53-1, got {value}')
    return value


def _b64(obj: Mapping[str, Any], key: str, what: str, exc: _ExcType) -> bytes:
    text = _str(obj, key, what, exc)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise exc(f'{what} "{key}" is not valid base64: {e}') from None


def _b64_text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _check_bytes(data: Any, key: str, what: str) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise LocalProtocolError(f'{what} "{key}" must be bytes, got {type(data).__name__}')


def _quoted(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{n}"' for n in names)
