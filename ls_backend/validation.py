"""Checks for what arrives in a request: every body, id and query parameter is hostile until checked here.

A request that fails a check raises ``InvalidRequest`` (HTTP 400, or its ``status``) with a message that
names the field and quotes at most a short piece of the value, so an answer never echoes unbounded input.

- ``json_object(raw)``: a JSON object, nested at most ``MAX_DEPTH`` levels, whose strings (keys too) are
  valid Unicode (a lone UTF-16 surrogate such as ``"\\ud800"`` cannot be stored or logged);
- ``parse_id(value, name)``: a non-negative id that fits SQLite's 64-bit integers, from an int or an ASCII
  digit string (``"²"`` is a digit to ``str.isdigit`` but no number);
- ``project_id(value)``: LS's ``"<id>.<timestamp>"`` or a plain id;
- ``id_list(values, name, limit)``: a list of ids of bounded length.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64
MAX_ID = 2**63 - 1
QUOTE_CHARS = 40
_DIGITS = re.compile(r"[0-9]{1,19}")


class InvalidRequest(ValueError):
    """The request is malformed; answered with HTTP 400 (or `status`) and the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """A short, printable repr of a hostile value for an error message."""
    if isinstance(value, str):
        text = value if len(value) <= limit else value[:limit] + "..."
        return ascii(text)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {len(str(abs(value)))} digits" if value.bit_length() < 10_000 else "a huge integer"
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    return ascii(value)[:limit]


def json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or InvalidRequest saying what is wrong with it."""
    if not raw:
        raise InvalidRequest("the request body is empty; a JSON object is expected")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise InvalidRequest(f"the request body is nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError, or an integer of > 4300 digits
        raise InvalidRequest(f"the request body is not valid JSON: {str(error)[:200]}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    _check_tree(body)
    return body


def _check_tree(body: Any) -> None:
    """Depth at most MAX_DEPTH, every string encodable as UTF-8; iterative, so no recursion limit is hit."""
    stack: list[tuple[Any, int, str]] = [(body, 1, "body")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, str):
            _check_text(value, where)
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise InvalidRequest(f"the request body is nested deeper than {MAX_DEPTH} levels (at {where})")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, f"a key of {where}")
                stack.append((item, depth + 1, f"{where}.{key[:QUOTE_CHARS]}"))
        else:
            stack.extend((item, depth + 1, f"{where}[{index}]") for index, item in enumerate(value))


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{ascii(where[:200])} contains a lone UTF-16 surrogate (not valid Unicode)") from None


def parse_id(value: Any, name: str) -> int:
    """A non-negative integer id below 2**63 from an int or a string of ASCII digits."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidRequest(f"'{name}' must be an integer id, got {quote(value)}")
    if isinstance(value, str):
        text = value.strip()
        if not _DIGITS.fullmatch(text):
            raise InvalidRequest(f"'{name}' must be an integer id, got {quote(value)}")
        value = int(text)
    if value < 0 or value > MAX_ID:
        raise InvalidRequest(f"'{name}' must be an id from 0 to {MAX_ID}, got {quote(value)}")
    return value


def project_id(value: Any, name: str = "project") -> int:
    """LS sends "<project id>.<created timestamp>" to /setup and /predict; plain ids are accepted too."""
    if value is None or isinstance(value, bool):
        raise InvalidRequest(f"missing '{name}'")
    if isinstance(value, float):
        raise InvalidRequest(f"'{name}' must look like '<id>.<timestamp>' or '<id>', got {quote(value)}")
    if isinstance(value, str):
        head = value.split(".", 1)[0].strip()
        if not _DIGITS.fullmatch(head):
            raise InvalidRequest(f"'{name}' must look like '<id>.<timestamp>' or '<id>', got {quote(value)}")
        value = head
    return parse_id(value, name)


def id_list(values: Any, name: str, limit: int, *, empty_ok: bool = False) -> list[Any]:
    """A JSON list (non-empty unless `empty_ok`) of at most `limit` entries; the caller checks the entries."""
    if not isinstance(values, list) or not (values or empty_ok):
        raise InvalidRequest(f"'{name}' must be a {'' if empty_ok else 'non-empty '}list")
    if len(values) > limit:
        raise InvalidRequest(f"'{name}' has {len(values)} entries; at most {limit} per request", 413)
    return values
