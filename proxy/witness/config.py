"""The witness's own config file (`nocontact witness -c FILE`): read, checked, resolved.

Rules this module keeps:
1. Its own small file, not the daemon's: a witness runs on a contact's machine or at an
   advocacy organisation, which never holds the survivor's config.
2. Read like the daemon's (proxy.config.load: bounded, located problems) and checked by a
   strict pydantic model; whatever the file, the only exception that leaves is
   `ConfigError`, each problem one line `FILE:LINE:COL: key: what is wrong`.
3. Paths are read relative to the config file's directory; the result holds absolute ones.
4. Every log key is a C2SP Ed25519 verifier key (`name+keyid+base64`, as the archive's
   `signing.pub`); several keys may be given for one origin (a log that rotates its key).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from proxy.archive.note import NoteError, Verifier
from proxy.config.load import read_document
from proxy.deliver.address import parse_listen
from proxy.errors import ConfigError, ConfigProblem
from proxy.witness.cosignature import CosignatureError, check_name


def _log_key(text: str) -> str:
    try:
        Verifier.decode(text)
    except NoteError as error:
        raise ValueError(f"not a log verifier key: {error}") from None
    return text.strip()


def _listen(text: str) -> str:
    parse_listen(text)
    return text


def _name(text: str) -> str:
    try:
        return check_name(text)
    except CosignatureError as error:
        raise ValueError(str(error)) from None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class WitnessedLog(_Section):
    """A log this witness cosigns for: its origin line and a key it signs with."""

    origin: str = Field(min_length=1, max_length=256, description="The checkpoint's first line")
    key: Annotated[str, AfterValidator(_log_key)] = Field(
        description="The log's verifier key, name+keyid+base64 (an archive's signing.pub)"
    )


class WitnessConfig(_Section):
    """A whole witness config file."""

    name: Annotated[str, AfterValidator(_name)] = Field(
        description="The witness's key name, a schema-less URL, e.g. advocacy.example/witness"
    )
    listen: Annotated[str, AfterValidator(_listen)] = Field(
        default="127.0.0.1:8790", description="host:port the witness listens on"
    )
    state_dir: str = Field(
        default="./var/witness", min_length=1,
        description="Where the latest checkpoint per log is kept (state.json, 0600)",
    )  # fmt: skip
    key_file: str = Field(
        default="./var/witness/witness.key", min_length=1,
        description="The witness's Ed25519 signing key, PEM; made 0600 if absent",
    )  # fmt: skip
    logs: list[WitnessedLog] = Field(
        min_length=1, max_length=1024, description="The logs it cosigns for; at least one"
    )

    def log_keys(self) -> Mapping[str, tuple[Verifier, ...]]:
        """The trusted keys per origin (rule 4)."""
        keys: dict[str, tuple[Verifier, ...]] = {}
        for log in self.logs:
            keys[log.origin] = (*keys.get(log.origin, ()), Verifier.decode(log.key))
        return keys


def load_witness_config(path: str | os.PathLike[str]) -> WitnessConfig:
    """The witness config at `path`, paths made absolute; else ConfigError (rule 2)."""
    document, problems = read_document(path, os.environ)
    if problems:
        raise ConfigError(problems)
    try:
        config = WitnessConfig.model_validate(document.data)
    except ValidationError as error:
        found: list[ConfigProblem] = []
        for detail in error.errors(include_url=False):
            loc = tuple(detail["loc"])
            message = detail["msg"].removeprefix("Value error, ")
            if detail["type"] == "extra_forbidden":
                message = "unknown key"
            found.append(document.problem(loc, message[:1].lower() + message[1:]))
        raise ConfigError(found) from None
    directory = document.directory
    return config.model_copy(update={
        "state_dir": str(directory / Path(config.state_dir)),
        "key_file": str(directory / Path(config.key_file)),
    })  # fmt: skip
