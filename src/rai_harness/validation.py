"""Reading user files and explaining what is wrong with them.

The bottom floor of file handling: one YAML reader (run configs, guard and gate policies),
one JSONL reader (prompt files, suite datasets, replay captures, ``samples.jsonl``) and one
translation of pydantic's errors into a :class:`~rai_harness.errors.ConfigError`
that names the file, the key path (``providers[1].timeout_s``) and the fix. It imports
only :mod:`rai_harness.errors`, so the gate and the report can validate their files
without loading the run configuration (and with it the providers).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, ValidationError

from rai_harness.errors import ConfigError, did_you_mean

#: Longest single wait a config may ask for, in seconds (a timeout, a backoff, an honoured
#: Retry-After): an hour. Every wait of a run is bounded, and `.inf` passes `gt=0`.
MAX_WAIT_S = 3600.0

__all__ = [
    "JsonlLine",
    "YamlDocument",
    "format_validation_error",
    "iter_jsonl",
    "parse_yaml_text",
    "read_yaml_document",
    "read_yaml_file",
    "repair_surrogates",
]

#: A lone surrogate: what a ``\ud800`` JSON escape or ``surrogateescape`` decoding leaves in a
#: ``str``. Not Unicode text: no UTF-8 writer can encode it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


#: A ``\uD800``-``\uDFFF`` escape in JSON text: the only way a UTF-8 file yields a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


#: The user-information part of a URL (``//user:password@``), masked in messages.
_URL_CREDENTIALS = re.compile(r"(//)[^/@\s]*@")


def _holds_lone_surrogate(value: Any) -> bool:
    """True when a string anywhere in ``value`` (keys included) holds a lone surrogate."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def repair_surrogates(text: str) -> tuple[str, bool]:
    """``text`` with every lone surrogate replaced by U+FFFD, and whether any was."""
    if text.isascii() or not _LONE_SURROGATE.search(text):
        return text, False
    return _LONE_SURROGATE.sub("\ufffd", text), True


def _loc_to_path(loc: Sequence[int | str], prefix: str = "") -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def format_validation_error(
    exc: ValidationError, file: str | None, prefix: str, model: type[BaseModel]
) -> ConfigError:
    """Turn pydantic's first error into a ConfigError that says where and how to fix it.

    Args:
        exc: The validation error.
        file: The file being validated (for the message).
        prefix: Key path of the validated section within the file (``providers[2]``).
        model: The pydantic model validated (for "allowed keys" hints).
    """
    errors = exc.errors()
    err = _most_helpful(errors)
    loc = err["loc"]
    key_path = _loc_to_path(loc, prefix)
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        bad = str(loc[-1])
        suggestion = did_you_mean(bad, allowed)
        message = f"unknown key '{bad}'{suggestion}; allowed keys here: {', '.join(sorted(allowed))}"
    elif err["type"] == "missing":
        message = "this key is required but missing"
    elif err["type"] in ("value_error", "assertion_error") and isinstance(err.get("input"), dict | list):
        # A check across a whole section (a model validator): its message is the explanation,
        # and "(got dict)" would name nothing.
        message = _message(err)
    else:
        got = err.get("input")
        shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
        # A URL's user name and password are never echoed (CI logs keep what a run prints).
        shown = _URL_CREDENTIALS.sub(r"\1***@", shown)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        message = f"{_message(err)} (got {shown})"
    # The other problems too, briefly: naming only the first made fixing a file one rerun
    # per mistake.
    others = [e for e in errors if e is not err]
    if others:
        listed = "; ".join(_brief(e, prefix, model) for e in others[:_MAX_OTHER_PROBLEMS])
        more = len(others) - _MAX_OTHER_PROBLEMS
        message += f" [also {listed}" + (f"; and {more} more" if more > 0 else "") + "]"
    return ConfigError(message, file=file, key_path=key_path or None)


#: Further problems of a section named after the first one.
_MAX_OTHER_PROBLEMS = 4


def _brief(err: Any, prefix: str, model: type[BaseModel]) -> str:
    """One further problem: its key path and what is wrong (a misspelt key with its likely fix)."""
    path = _loc_to_path(err["loc"], prefix) or "(top level)"
    if err["type"] == "extra_forbidden":
        return (
            f"{path}: unknown key{did_you_mean(str(err['loc'][-1]), _allowed_keys(model, err['loc'][:-1]))}"
        )
    if err["type"] == "missing":
        return f"{path}: required but missing"
    return f"{path}: {_message(err)}"


def _most_helpful(errors: Sequence[Any]) -> Any:
    """The error to explain: pydantic's first, unless a misspelt key caused it.

    A typo in a required key (``polcy:`` for ``policy:``) gives two errors in that order:
    ``policy`` missing, ``polcy`` not allowed. Only the second names the typo and can suggest
    the fix, so it wins over a missing key in the same section.
    """
    first = errors[0]
    if first["type"] == "missing":
        parent = tuple(first["loc"][:-1])
        for err in errors[1:]:
            if err["type"] == "extra_forbidden" and tuple(err["loc"][:-1]) == parent:
                return err
    return first


def _message(err: Any) -> str:
    """Pydantic's message, without the "Value error, " it puts before a validator's own text."""
    ctx_error = (err.get("ctx") or {}).get("error")
    if err["type"] in ("value_error", "assertion_error") and ctx_error is not None:
        return str(ctx_error)
    return str(err["msg"])


def _allowed_keys(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """Field names of the (nested) model at ``loc``, for "allowed keys" hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}).keys())


class YamlDocument(NamedTuple):
    """A parsed YAML file and the sha256 of the bytes it was parsed from."""

    data: Any
    sha256: str


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping.

    PyYAML keeps the last value silently: a reviewer reading ``{threshold: 0.5, threshold:
    0.9}`` sees the first. Merge keys (``<<``) are left to PyYAML.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML's own error follows
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def read_yaml_document(path: str | Path, *, what: str = "file") -> YamlDocument:
    """Read a YAML file once: its parsed content and the sha256 of its bytes.

    For files whose content is part of an identity (a guard policy in a call key): hashing
    and parsing the same bytes means the hash is of what was parsed, never of a later edit.

    Raises:
        ConfigError: Missing, unreadable, not UTF-8, or not valid YAML (naming the file).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} not found; check the path", file=str(p)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}: {exc.strerror}", file=str(p)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the {what} is not UTF-8 text (byte {exc.start})", file=str(p)) from exc
    return YamlDocument(parse_yaml_text(text, file=str(p)), hashlib.sha256(raw).hexdigest())


def parse_yaml_text(text: str, *, file: str) -> Any:
    """Parse YAML text safely, refusing a key repeated in one mapping.

    Args:
        text: The YAML.
        file: Where it came from, for the error.

    Raises:
        ConfigError: Not valid YAML, naming ``file``, the line and the column.
    """
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"invalid YAML{where}: {getattr(exc, 'problem', exc)}", file=file) from exc


def read_yaml_file(path: str | Path, *, what: str = "file") -> Any:
    """Parse a YAML file, with errors that name the file and, for bad YAML, the line and column.

    Args:
        path: The file.
        what: How messages call the file ("gate policy file"...).

    Raises:
        ConfigError: Missing, unreadable, or not valid YAML.
    """
    return read_yaml_document(path, what=what).data


class JsonlLine(NamedTuple):
    """One object of a JSONL file and its 1-based line number (for error messages)."""

    number: int
    obj: dict[str, Any]


def iter_jsonl(
    path: str | Path, *, what: str = "JSONL file", missing_hint: str = "check the path"
) -> Iterator[JsonlLine]:
    """Stream the JSON objects of a JSONL file, one per non-blank line, with their line numbers.

    Streams (never reads the whole file at once), so a large ``samples.jsonl`` costs one line
    of memory beyond what the caller keeps.

    Args:
        path: The file.
        what: How messages call the file ("prompt file", "replay file"...).
        missing_hint: What to do when the file does not exist.

    Raises:
        ConfigError: Missing, unreadable or not UTF-8; or a line that is not valid JSON or not
            a JSON object (naming the line and, for bad JSON, the column).
    """
    file = str(path)
    number = 0
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the first line.
        with open(path, encoding="utf-8-sig") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line.rstrip("\r\n"))  # so a column points into the line
                except json.JSONDecodeError as exc:
                    raise ConfigError(
                        f"not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object",
                        file=file,
                        key_path=f"line {number}",
                    ) from None
                except RecursionError:
                    raise ConfigError(
                        "nests JSON too deeply to read; each line must be one flat JSON object",
                        file=file,
                        key_path=f"line {number}",
                    ) from None
                if not isinstance(obj, dict):
                    raise ConfigError("each line must be a JSON object", file=file, key_path=f"line {number}")
                if _SURROGATE_ESCAPE.search(line) and _holds_lone_surrogate(obj):
                    raise ConfigError(
                        "holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not "
                        "Unicode text and cannot be sent or stored; remove it or write \\ufffd instead",
                        file=file,
                        key_path=f"line {number}",
                    )
                yield JsonlLine(number, obj)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found; {missing_hint}", file=file) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} is not UTF-8 text ({exc.reason}, after line {number}); save it as UTF-8 JSONL", file=file
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}: {exc.strerror or exc}", file=file) from None
