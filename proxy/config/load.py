"""Reading a config file into plain values, remembering where each one was written.

Rules this module keeps:
1. PyYAML only composes: the node graph comes from `yaml.SafeLoader`, and this module walks
   it, building plain values (mappings, lists, and scalars that `SafeConstructor` knows) and
   recording a line and column for every key and value. Nothing else is ever constructed.
2. Whatever the input, the only exception that leaves is `ConfigError`; a file that cannot
   be read as YAML at all is one problem, and once it can, every problem with a single
   value is collected. Each is one line: `FILE:LINE:COL: key: what is wrong`.
3. Work is bounded: at most `MAX_BYTES` are read, and a document that would expand (through
   aliases) to more than `MAX_VALUES` values or nest deeper than `MAX_DEPTH` is refused
   before any of it is built, so a YAML bomb is an error line, not a hang.
4. `${NAME}` in a string is replaced by the environment variable NAME (unset is an error
   there); `$$` is a literal `$`. Error messages show the reference, never the value.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from proxy.errors import ConfigError, ConfigProblem

MAX_BYTES = 16 * 1024 * 1024
MAX_VALUES = 1_000_000
MAX_DEPTH = 64

Loc = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("null", "bool", "int", "float", "str", "timestamp"))
_ENV = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)\}|(\{))")
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MAX_MESSAGE = 400
_KIND_NAMES: dict[type[Node], str] = {MappingNode: "a mapping", SequenceNode: "a list"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Spot:
    """A 1-based line and column in the config file."""

    line: int
    column: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """A config file read into plain values, with where each key and value was written."""

    file: str
    directory: Path
    data: dict[str, Any]
    values: dict[Loc, Spot]
    keys: dict[Loc, Spot]
    texts: dict[Loc, str]  # scalars as written, for "quote it" hints
    secrets: dict[Loc, str]  # values that came from ${ENV}: never printed
    broken: frozenset[Loc]  # values already reported; validation must not report them again

    def problem(self, loc: Loc, message: str, *, at_key: bool = False) -> ConfigProblem:
        """A problem at `loc`: its key when `at_key`, else its value, else its nearest parent."""
        spot = self.keys.get(loc) if at_key else None
        for depth in range(len(loc), -1, -1):
            spot = spot or self.values.get(loc[:depth])
        if self.secrets.get(loc):
            message = message.replace(self.secrets[loc], self.texts.get(loc, "${...}"))
        return _problem(self.file, spot or Spot(line=1, column=1), dotted(loc), message)


def read_document(
    path: str | os.PathLike[str], environ: Mapping[str, str]
) -> tuple[Document, list[ConfigProblem]]:
    """The file's values and marks, plus problems with single values; ConfigError if unusable."""
    file = os.fspath(path)
    text = _read_text(file)
    loader = _compose_loader(file, text)
    try:
        root = _compose(file, loader)
        if root is None:
            message = "the file is empty (expected keys such as archive:, contacts: and people:)"
            raise _refuse(file, Spot(line=1, column=1), message)
        if not isinstance(root, MappingNode):
            message = f"the top level must be a mapping of keys, not {_node_kind(root)}"
            raise _refuse(file, _spot(root), message)
        if root.tag != _TAG + "map":  # a tagged mapping, e.g. !!set {a, b}
            tag = root.tag.replace(_TAG, "!!", 1)
            message = f"the top level must be a plain mapping of keys, not one tagged '{tag}'"
            raise _refuse(file, _spot(root), message)
        _measure(file, root, {}, set(), 0)
        walker = _Walker(file=file, loader=loader, environ=environ)
        data = walker.value(root, ())
    finally:
        loader.dispose()
    document = Document(
        file=file,
        directory=Path(os.path.abspath(file)).parent,
        data=data,
        values=walker.values,
        keys=walker.keys,
        texts=walker.texts,
        secrets=walker.secrets,
        broken=frozenset(walker.broken),
    )
    return document, walker.problems


def dotted(loc: Loc) -> str:
    """A key path as people write it: people[0].emails[1]."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += "[" + ascii(part) + "]"
    return out


def _problem(file: str, spot: Spot, key: str, message: str) -> ConfigProblem:
    """One printable line: control characters escaped, over-long values cut short."""
    line = _printable(message)
    if len(line) > _MAX_MESSAGE:
        line = line[: _MAX_MESSAGE - 1] + "…"
    file = _printable(file)
    return ConfigProblem(file=file, line=spot.line, column=spot.column, key=key, message=line)


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _refuse(file: str, spot: Spot, message: str) -> ConfigError:
    return ConfigError([_problem(file, spot, "", message)])


def _read_text(file: str) -> str:
    start = Spot(line=1, column=1)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        with open(os.open(file, os.O_RDONLY | os.O_NONBLOCK), "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise _refuse(file, start, "is not a regular file")
            raw = stream.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise _refuse(file, start, "no such file") from None
    except IsADirectoryError:
        raise _refuse(file, start, "is a directory, not a config file") from None
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise _refuse(file, start, f"cannot read: {reason.lower()}") from None
    if len(raw) > MAX_BYTES:
        raise _refuse(file, start, "the file is larger than 16 MiB")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = raw[: error.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        message = f"not UTF-8 text (byte 0x{raw[error.start]:02x}); save the file as UTF-8"
        raise _refuse(file, Spot(line=line, column=column), message) from None


def _compose_loader(file: str, text: str) -> yaml.SafeLoader:
    try:
        return yaml.SafeLoader(text)
    except yaml.reader.ReaderError as error:
        before = text[: error.position]
        spot = Spot(line=before.count("\n") + 1, column=error.position - before.rfind("\n"))
        char = f"U+{error.character:04X}" if isinstance(error.character, int) else "a character"
        message = f"{char} is not allowed in YAML (is this a binary file?)"
        raise _refuse(file, spot, message) from None


def _compose(file: str, loader: yaml.SafeLoader) -> Node | None:
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        spot = Spot(line=mark.line + 1, column=mark.column + 1) if mark else Spot(line=1, column=1)
        message = error.problem or error.context or "not valid YAML"
        if "'\\t'" in message:
            message = "found a tab: YAML indentation must use spaces, not tabs"
        elif error.context and message.startswith("but "):
            message = f"{error.context}, {message}"
        elif error.context and error.context_mark:
            message += f" ({error.context} at line {error.context_mark.line + 1})"
        raise _refuse(file, spot, message) from None
    except yaml.YAMLError as error:
        raise _refuse(file, Spot(line=1, column=1), f"not valid YAML: {error}") from None
    except RecursionError:
        mark = loader.get_mark()
        spot = Spot(line=mark.line + 1, column=mark.column + 1)
        raise _refuse(file, spot, f"nested too deeply (at most {MAX_DEPTH} levels)") from None


def _measure(file: str, node: Node, sizes: dict[int, int], open_: set[int], depth: int) -> int:
    """How many values `node` expands to, aliases included; refuses bombs, loops and depth."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise _refuse(file, _spot(node), "a recursive alias: this value contains itself")
    if depth > MAX_DEPTH:
        raise _refuse(file, _spot(node), f"nested too deeply (at most {MAX_DEPTH} levels)")
    open_.add(id(node))
    size = 1
    if isinstance(node, SequenceNode):
        children: list[Node] = node.value
    elif isinstance(node, MappingNode):
        children = [child for pair in node.value for child in pair]
    else:
        children = []
    for child in children:
        size += _measure(file, child, sizes, open_, depth + 1)
        if size > MAX_VALUES:
            message = f"expands to more than {MAX_VALUES:,} values (a YAML bomb of aliases?)"
            raise _refuse(file, _spot(node), message)
    open_.discard(id(node))
    sizes[id(node)] = size
    return size


class _Walker:
    """Builds plain values from measured nodes, noting each one's place and any problem."""

    def __init__(self, *, file: str, loader: yaml.SafeLoader, environ: Mapping[str, str]) -> None:
        self.file = file
        self.loader = loader
        self.environ = environ
        self.values: dict[Loc, Spot] = {}
        self.keys: dict[Loc, Spot] = {}
        self.texts: dict[Loc, str] = {}
        self.secrets: dict[Loc, str] = {}
        self.broken: set[Loc] = set()
        self.problems: list[ConfigProblem] = []

    def value(self, node: Node, loc: Loc) -> Any:
        """The plain value of `node`, found at `loc`; None (and a problem) if it has none."""
        self.values[loc] = _spot(node)
        if isinstance(node, MappingNode) and node.tag == _TAG + "map":
            return self._mapping(node, loc)
        if isinstance(node, SequenceNode) and node.tag == _TAG + "seq":
            return [self.value(item, (*loc, index)) for index, item in enumerate(node.value)]
        if isinstance(node, ScalarNode) and node.tag in _SCALAR_TAGS:
            return self._scalar(node, loc)
        tag = node.tag.replace(_TAG, "!!", 1)
        self._fail(loc, _spot(node), f"the YAML tag '{tag}' is not supported here")
        return None

    def _mapping(self, node: MappingNode, loc: Loc) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            spot = _spot(key_node)
            if key_node.tag == _TAG + "merge" or not isinstance(key_node, ScalarNode):
                message = (
                    "merge keys ('<<') are not supported: write the keys out"
                    if isinstance(key_node, ScalarNode)
                    else f"a key must be a word, not {_node_kind(key_node)}"
                )
                self.problems.append(_problem(self.file, spot, dotted(loc), message))
                continue
            key: str = key_node.value
            key_loc = (*loc, key)
            if key_loc in self.keys:
                first = self.keys[key_loc]
                message = f"duplicate key (first set at line {first.line}, column {first.column})"
                self.problems.append(_problem(self.file, spot, dotted(key_loc), message))
                continue
            self.keys[key_loc] = spot
            result[key] = self.value(value_node, key_loc)
        return result

    def _scalar(self, node: ScalarNode, loc: Loc) -> Any:
        self.texts[loc] = node.value
        try:
            value = self.loader.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, KeyError, OverflowError) as error:
            reason = getattr(error, "problem", None) or str(error)
            self._fail(loc, _spot(node), f"cannot read this value: {reason}")
            return None
        if not isinstance(value, str):
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self._fail(loc, _spot(node), "contains a character that is not valid Unicode")
            return None
        if "\0" in value:  # no name, address or path holds one; os.path raises on it
            self._fail(loc, _spot(node), "contains a NUL character (\\0)")
            return None
        return self._substitute(value, loc, _spot(node))

    def _substitute(self, text: str, loc: Loc, spot: Spot) -> str | None:
        references = list(_ENV.finditer(text))
        names = list(dict.fromkeys(m.group(2) for m in references if m.group(2)))
        unset = [name for name in names if name not in self.environ]
        if any(m.group(3) for m in references):
            self._fail(loc, spot, "write ${NAME} for an environment variable, or $$ for a '$'")
        elif unset:
            plural = "s are" if len(unset) > 1 else " is"
            self._fail(loc, spot, f"environment variable{plural} not set: {', '.join(unset)}")
        else:
            result = _ENV.sub(lambda m: "$" if m.group(1) else self.environ[m.group(2)], text)
            if names:
                self.secrets[loc] = result
            return result
        return None

    def _fail(self, loc: Loc, spot: Spot, message: str) -> None:
        self.problems.append(_problem(self.file, spot, dotted(loc), message))
        self.broken.add(loc)


def _spot(node: Node) -> Spot:
    return Spot(line=node.start_mark.line + 1, column=node.start_mark.column + 1)


def _node_kind(node: Node) -> str:
    return _KIND_NAMES.get(type(node), "a single value")
