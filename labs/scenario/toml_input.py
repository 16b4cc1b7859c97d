"""Reading a scenario file safely: untrusted TOML, refused with one line (file, line, column, key) when
it is too big, not UTF-8, nested too deep or keyed too long to parse, instead of a traceback or a machine
brought to its knees. Pure, but for `read`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from ..errors import ScenarioError
from .expect import show

MAX_FILE_BYTES = 1 << 20
#: tomllib builds a dotted key of n parts in O(n^2) time and memory: 100,000 parts exhaust the machine
MAX_KEY_PARTS = 16

_PART = r"""(?:[A-Za-z0-9_-]++|"[^"\n]*+"|'[^'\n]*+')"""
_LONG_KEY = re.compile(rf"(?<![A-Za-z0-9_-]){_PART}(?:[ \t]*+\.[ \t]*+{_PART}){{{MAX_KEY_PARTS},}}")
_BRACKETS = re.compile(r""""(?:[^"\\\n]|\\.)*"|'[^'\n]*'|#[^\n]*|[\[\]{}]""")
_LINE_KEY = re.compile(r"^\s*([^=#\s][^=#]*?)\s*=")


def _place(text: str, pos: int) -> str:
    """`line N, column C (key 'k')` for a position in a scenario's text: where a problem is."""
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start:line_end if line_end >= 0 else len(text)]
    found = _LINE_KEY.match(line[:200])
    key = f" (key {show(found.group(1))})" if found else ""
    return f"line {text.count(chr(10), 0, pos) + 1}, column {pos - line_start + 1}{key}"


def _too_deep_at(text: str, limit: int = 64) -> int:
    """Where brackets first nest `limit` deep (strings and comments skipped, roughly); 0 when they never do."""
    depth = 0
    for token in _BRACKETS.finditer(text):
        c = token.group()
        if c in "[{":
            depth += 1
            if depth >= limit:
                return token.start()
        elif c in "]}":
            depth -= 1
    return 0


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """tomllib, kept safe: a size limit, no dotted key long enough to cost it quadratic time and memory, and
    nesting or integers past Python's limits refused as bad TOML instead of a traceback."""
    if len(text) > MAX_FILE_BYTES:
        raise ScenarioError(f"{where}: {len(text):,} characters, more than the {MAX_FILE_BYTES:,} a scenario "
                            f"may have")
    long_key = _LONG_KEY.search(text)
    if long_key:
        raise ScenarioError(f"{where}: dotted key {show(long_key.group())} at {_place(text, long_key.start())} "
                            f"has more than {MAX_KEY_PARTS} parts")
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ScenarioError(f"{where}: not valid TOML: nested too deep (arrays or inline tables) at "
                            f"{_place(text, _too_deep_at(text))}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{where}: not valid TOML: {exc}") from None
    except ValueError as exc:  # int() past sys.get_int_max_str_digits()
        digits = re.search(r"[0-9][0-9_]{4300,}", text)
        if not digits:
            raise ScenarioError(f"{where}: not valid TOML: {show(str(exc))}") from None
        raise ScenarioError(f"{where}: not valid TOML: an integer of more than 4300 digits at "
                            f"{_place(text, digits.start())}") from None


def shown(text: str) -> str:
    """A file or scenario name as it goes into a one-line message."""
    return text if text.isprintable() else ascii(text)


def read(path: Path) -> str:
    """A scenario file's text: at most MAX_FILE_BYTES of UTF-8 (a leading byte-order mark is dropped)."""
    where = shown(str(path))
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(f"{where}: cannot be read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        size = max(path.stat().st_size, len(data))
        raise ScenarioError(f"{where}: {size:,} bytes, more than the {MAX_FILE_BYTES:,} a scenario file may have")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[:exc.start].decode("utf-8", "replace")
        line = before + data[exc.start:].split(b"\n", 1)[0].decode("utf-8", "replace")
        raise ScenarioError(f"{where}: not UTF-8: byte 0x{data[exc.start]:02x} at {_place(line, len(before))}; "
                            f"save the file as UTF-8") from None
