"""The config's schema: as JSON Schema for tools, and its complaints put in plain words.

Rules this module keeps:
1. `proxy.config.model` is the one source of truth; the JSON Schema is derived from it.
2. Every pydantic error becomes one `ConfigProblem` at the place in the file it is about:
   the value, the unknown key itself, or the mapping that lacks a required key.
3. One problem per place: a union's members, or a value the reader already reported, never
   add a second line about the same thing.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from proxy.config import values
from proxy.config.load import Document, Loc
from proxy.config.model import Config
from proxy.errors import ConfigProblem

_JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_EXPECTED = {
    "string_type": "a string",
    "int_type": "a whole number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
}
_DATE_ERRORS = frozenset(
    {"date_type", "date_parsing", "date_from_datetime_parsing", "date_from_datetime_inexact"}
)
_FIXED = {"missing": "required key is missing", "string_too_short": "must not be empty"}
_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a yes/no value"),
    (int, "an integer"),
    (float, "a number"),
    (dt.date, "a date"),
    (dict, "a mapping"),
    (list, "a list"),
)
_AT_LEAST_ONE: dict[Loc, str] = {
    ("people",): "at least one person is required: an empty blocklist blocks no one",
    ("contacts",): "at least one contact is required: without one, held items could never "
    "be opened",
}


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the config file, for editors and `nocontact schema`."""
    generated = Config.model_json_schema()
    generated["title"] = "nocontact config"
    return {"$schema": _JSON_SCHEMA_DIALECT, **generated}


def validate(document: Document) -> tuple[Config | None, list[ConfigProblem]]:
    """The Config the document describes, or None and a problem for each thing wrong."""
    context = {"default_region": _region(document.data.get("default_region"))}
    try:
        return Config.model_validate(document.data, context=context), []
    except ValidationError as error:
        problems: list[ConfigProblem] = []
        seen: set[Loc] = set()
        for detail in error.errors(include_url=False):
            loc = _file_loc(detail, document.data)
            if loc in seen or any(loc[:n] in document.broken for n in range(len(loc) + 1)):
                continue
            seen.add(loc)
            problems.append(_translate(detail, loc, document))
        return None, problems


def _region(raw: object) -> str | None:
    if not isinstance(raw, str):
        return None
    try:
        return values.region(raw)
    except ValueError:
        return None


def _file_loc(detail: ErrorDetails, data: object) -> Loc:
    """The error's place in the file; a union member's tag in pydantic's loc is no place."""
    out: list[str | int] = []
    current: Any = data
    last = len(detail["loc"]) - 1
    for index, part in enumerate(detail["loc"]):
        if _holds(current, part):
            current = current[part]
        elif not (index == last and detail["type"] == "missing" and isinstance(current, dict)):
            continue
        out.append(part)
    return tuple(out)


def _holds(container: object, part: str | int) -> bool:
    if isinstance(container, dict):
        return isinstance(part, str) and part in container
    return isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container)


def _translate(detail: ErrorDetails, loc: Loc, document: Document) -> ConfigProblem:
    if detail["type"] == "extra_forbidden":
        return document.problem(loc, _unknown_key(loc), at_key=True)
    return document.problem(loc, _message(detail, loc, document))


def _message(detail: ErrorDetails, loc: Loc, document: Document) -> str:
    kind = detail["type"]
    given = detail.get("input")
    context = detail.get("ctx") or {}
    if loc in _AT_LEAST_ONE and (kind == "too_short" or given is None):
        message = _AT_LEAST_ONE[loc]
    elif kind in _FIXED:
        message = _FIXED[kind]
    elif kind == "value_error":
        message = detail["msg"].removeprefix("Value error, ")
    elif kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, got {_describe(given)}"
        text = document.texts.get(loc)
        if kind == "string_type" and text is not None and given is not None:
            message += f" (quote it: {json.dumps(text, ensure_ascii=False)})"
    elif kind in _DATE_ERRORS:
        message = f"expected a date written YYYY-MM-DD, got {_describe(given)}"
    elif kind == "literal_error":
        expected = context.get("expected", "one of the listed words")
        message = f"expected {expected}, got {_describe(given)}"
    elif kind == "too_short":
        message = f"expected at least {context.get('min_length', 1)} entries"
    else:
        message = detail["msg"][:1].lower() + detail["msg"][1:]
    return message


def _unknown_key(loc: Loc) -> str:
    model = _model_at(loc[:-1])
    retired = getattr(model, "retired_keys", {}).get(loc[-1])
    if isinstance(retired, str):
        return retired
    known = sorted(_keys(model)) if model else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    if known:
        return f"unknown key (valid keys: {', '.join(known)})"
    return "unknown key (this section takes no keys yet)"


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model that reads the mapping at `loc`, following fields, lists and optionals."""
    model: type[BaseModel] | None = Config
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = _keys(model).get(part)
        model = _model_in(field.annotation) if field else None
    return model


def _keys(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The keys a model reads, as the file writes them (`from`, not the field's name)."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _describe(value: object) -> str:
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else "a long string"
    if value is None:
        return "nothing (an empty value)"
    return next((text for kind, text in _KINDS if isinstance(value, kind)), type(value).__name__)
