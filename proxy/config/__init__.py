"""nocontact's config: one YAML file, read with every problem located to the character.

Rules this package keeps:
1. `load_config` returns a Config that is valid in every value and across entries, or
   raises `ConfigError` listing every problem found; it raises nothing else, whatever the file.
2. Three steps, each in its own module: `load` reads YAML into plain values and their places,
   `schema` validates them against `model`, `meaning` checks what spans entries and
   resolves files and paths against the config file's directory.
3. `load_replica_config` is for `nocontact replicate`, which may run with access to the
   archive and the S3 credentials only (deploy/systemd/nocontact-replicate.service): the
   whole file is read and validated, but only `archive.path` and `replicate:` are resolved
   and only their files looked at; the other sections' files (keys, tokens, passwords) may
   be out of its reach.
"""

from __future__ import annotations

import os

from proxy.config import meaning, schema
from proxy.config.files import absolute
from proxy.config.load import read_document
from proxy.config.model import (
    Allow,
    Archive,
    Channels,
    Config,
    Contact,
    Intermediary,
    Person,
    Replicate,
)
from proxy.config.replicate_checks import check_replicate
from proxy.config.schema import json_schema
from proxy.errors import ConfigError

__all__ = [
    "Allow",
    "Archive",
    "Channels",
    "Config",
    "Contact",
    "Intermediary",
    "Person",
    "json_schema",
    "load_config",
    "load_replica_config",
]


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, validate and resolve a config file, or raise ConfigError listing every problem."""
    document, problems = read_document(path, os.environ)
    config, invalid = schema.validate(document)
    problems += invalid
    if config is not None:
        config, wrong = meaning.resolve(document, config)
        problems += wrong
    if problems or config is None:
        raise ConfigError(sorted(problems, key=lambda p: (p.line, p.column)))
    return config


def load_replica_config(path: str | os.PathLike[str]) -> tuple[Archive, Replicate | None]:
    """The archive section (its path absolute) and the `replicate:` section (its files
    checked), from a file validated whole (rule 3); or ConfigError listing every problem."""
    document, problems = read_document(path, os.environ)
    config, invalid = schema.validate(document)
    problems += invalid
    replicate: Replicate | None = None
    if config is not None:
        replicate, wrong = check_replicate(document, config.replicate)
        problems += wrong
    if problems or config is None:
        raise ConfigError(sorted(problems, key=lambda p: (p.line, p.column)))
    archive = config.archive.model_copy(
        update={"path": absolute(document.directory, config.archive.path)}
    )
    return archive, replicate
