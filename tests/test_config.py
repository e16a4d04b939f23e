"""The config loader: the example works, and every broken config gets exact, located lines."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config import Config, json_schema, load_config
from proxy.config.load import read_document
from proxy.errors import ConfigError
from tests.factories import write_secret

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.yaml"
RECIPIENT = "age1v2pf68wd4y0u803wvxxs9uunz2fvcu4ep6jmk7glm32ss8f0tsuskzl33j"
SECRET_KEY = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"

# Nine lines; cases append from line 10, so the expected line numbers below can be read off.
BASE = f"""\
archive:
  path: ./archive
contacts:
  - name: Dana Whitfield
    role: lawyer
    age_recipient: {RECIPIENT}
people:
  - id: mark
    name: Mark Smith
"""
WITHOUT_PEOPLE = BASE.split("people:", maxsplit=1)[0]
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n"
    for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


def problems(path: Path | str) -> list[str]:
    """The error lines load_config raises for `path` (failing the test if it loads)."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(problem) for problem in caught.value.problems]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory, so error lines start with the short name config.yaml."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


BROKEN: list[tuple[str, str | bytes, list[str]]] = [
    (
        "unknown key with a close match",
        BASE + "    emials: [mark@smith.example]\n",
        ["config.yaml:10:5: people[0].emials: unknown key (did you mean 'emails'?)"],
    ),
    (
        "unknown key with no close match",
        BASE + "colour: blue\n",
        [
            "config.yaml:10:1: colour: unknown key (valid keys: alerts, allow, archive, channels, "
            "contacts, default_region, intermediaries, no_contact_since, outbound, people, "
            "portal, replicate, witnesses)"
        ],
    ),
    (
        "wrong types, quoted as written",
        BASE + "    aliases: [5551234, yes]\n",
        [
            "config.yaml:10:15: people[0].aliases[0]: expected a string, got an integer "
            '(quote it: "5551234")',
            "config.yaml:10:24: people[0].aliases[1]: expected a string, got a yes/no value "
            '(quote it: "yes")',
        ],
    ),
    (
        "a section that is not a mapping",
        BASE.replace("archive:\n  path: ./archive", "archive: ./archive\n#"),
        ["config.yaml:1:10: archive: expected a mapping of keys, got './archive'"],
    ),
    (
        "bad address",
        BASE + "    emails: ['mark at smith.example']\n",
        [
            "config.yaml:10:14: people[0].emails[0]: 'mark at smith.example' is not an email "
            "address (expected name@domain)"
        ],
    ),
    (
        "a domain written with '*.'",
        BASE + "    domains: ['*.smith.example']\n",
        [
            "config.yaml:10:15: people[0].domains[0]: write the bare domain, e.g. "
            "'smith.example' (subdomains are included)"
        ],
    ),
    (
        "unparseable phone number",
        BASE + "    phones: ['+1 555', call me]\n",
        [
            "config.yaml:10:14: people[0].phones[0]: cannot read '+1 555' as a phone number "
            "(expected e.g. +44 20 7946 0958)",
            "config.yaml:10:24: people[0].phones[1]: cannot read 'call me' as a phone number: "
            "write it with its +country code, or set default_region",
        ],
    ),
    (
        "a role that is not one of the words",
        BASE.replace("role: lawyer", "role: boss"),
        ["config.yaml:5:11: contacts[0].role: expected 'lawyer' or 'contact', got 'boss'"],
    ),
    (
        "a date that is not a date",
        BASE + "no_contact_since: last spring\n",
        [
            "config.yaml:10:19: no_contact_since: expected a date written YYYY-MM-DD, "
            "got 'last spring'"
        ],
    ),
    (
        "required key missing, located at the mapping that lacks it",
        BASE.replace("    name: Mark Smith\n", ""),
        ["config.yaml:8:5: people[0].name: required key is missing"],
    ),
    (
        "both a recipient and a recipient file",
        BASE.replace("role: lawyer", "role: lawyer\n    age_recipient_file: dana.age"),
        ["config.yaml:4:5: contacts[0]: give exactly one of age_recipient or age_recipient_file"],
    ),
    (
        "an optional field of the wrong type is reported once, not per union member",
        BASE.replace("role: lawyer", "role: lawyer\n    email: [dana@law.example]"),
        ["config.yaml:6:12: contacts[0].email: expected a string, got a list"],
    ),
    (
        "duplicate person ids",
        BASE + "  - id: mark\n    name: Mark Other\n",
        [
            "config.yaml:10:9: people[1].id: already used by people[0]: rule ids must name "
            "one entry only"
        ],
    ),
    (
        "duplicate contact names, ignoring case",
        BASE.replace(
            "people:",
            f"  - name: dana whitfield\n    role: contact\n    age_recipient: {RECIPIENT}\npeople:",
        ),
        [
            "config.yaml:7:11: contacts[1].name: already used by contacts[0]: custody records "
            "must tell contacts apart"
        ],
    ),
    (
        "the same mailbox under two people, spelled differently",
        BASE
        + "    emails: [Mark.Smith@gmail.com]\n"
        + "  - id: bob\n    name: Bob\n    emails: [marksmith+x@googlemail.com]\n",
        [
            "config.yaml:13:14: people[1].emails[0]: also listed at people[0].emails[0]; "
            "each address belongs to one person only"
        ],
    ),
    (
        "a blocked person's number also allowed, and also an intermediary's",
        BASE.replace("people:", "default_region: GB\npeople:")
        + "    phones: ['+44 20 7946 0958']\n"
        + "intermediaries:\n  - id: mum\n    phones: ['020 7946 0958']\n"
        + "allow:\n  phones: ['+442079460958']\n",
        [
            "config.yaml:14:14: intermediaries[0].phones[0]: also listed at "
            "people[0].phones[0]; list the number under the person or the intermediary, "
            "not both",
            "config.yaml:16:12: allow.phones[0]: also listed at people[0].phones[0]; "
            "a blocked person's number cannot also be allowed",
        ],
    ),
    (
        "duplicate intermediary ids",
        BASE + "intermediaries:\n  - id: mum\n    emails: [a@x.example]\n"
        "  - id: mum\n    emails: [b@x.example]\n",
        [
            "config.yaml:13:9: intermediaries[1].id: already used by intermediaries[0]: "
            "rule ids must name one entry only"
        ],
    ),
    (
        "a blocked person's domain also allowed, and an intermediary's address too",
        BASE
        + "    domains: [Smith.Example.]\n"
        + "intermediaries:\n  - id: mum\n    emails: [mum@x.example]\n"
        + "allow:\n  domains: [smith.example]\n  emails: [MUM@x.example]\n",
        [
            "config.yaml:15:13: allow.domains[0]: also listed at people[0].domains[0]; "
            "a blocked person's domain cannot also be allowed",
            "config.yaml:16:12: allow.emails[0]: also listed at intermediaries[0].emails[0]; "
            "an intermediary's address cannot also be allowed",
        ],
    ),
    (
        "empty people list",
        WITHOUT_PEOPLE + "people: []\n",
        [
            "config.yaml:7:9: people: at least one person is required: an empty blocklist "
            "blocks no one"
        ],
    ),
    (
        "contacts left empty",
        BASE.replace(BASE[BASE.index("  - name") : BASE.index("people:")], ""),
        [
            "config.yaml:3:10: contacts: at least one contact is required: without one, held "
            "items could never be opened"
        ],
    ),
    (
        "missing key file",
        BASE.replace(f"age_recipient: {RECIPIENT}", "age_recipient_file: keys/dana.age"),
        ["config.yaml:6:25: contacts[0].age_recipient_file: no such file: <dir>/keys/dana.age"],
    ),
    (
        "unset environment variable",
        BASE.replace("./archive", "${NOCONTACT_TEST_UNSET}/archive"),
        ["config.yaml:2:9: archive.path: environment variable is not set: NOCONTACT_TEST_UNSET"],
    ),
    (
        "duplicate mapping key, at the second one",
        BASE + "    name: Marcus\n",
        ["config.yaml:10:5: people[0].name: duplicate key (first set at line 9, column 5)"],
    ),
    (
        "tabs for indentation",
        BASE + "\taliases: [Marky]\n",
        ["config.yaml:10:1: found a tab: YAML indentation must use spaces, not tabs"],
    ),
    (
        "a scanner error keeps its own place",
        BASE + "    aliases: [Marky\n",
        [
            "config.yaml:11:1: expected ',' or ']', but got '<stream end>' (while parsing a "
            "flow sequence at line 10)"
        ],
    ),
    (
        "YAML bomb",
        BOMB,
        ["config.yaml:6:4: expands to more than 1,000,000 values (a YAML bomb of aliases?)"],
    ),
    (
        "recursive alias",
        "people: &loop [*loop]\n",
        ["config.yaml:1:9: a recursive alias: this value contains itself"],
    ),
    (
        "nesting too deep",
        "people: " + "[" * 100 + "]" * 100 + "\n",
        ["config.yaml:1:73: nested too deeply (at most 64 levels)"],
    ),
    (
        "a Python object tag",
        BASE + "x: !!python/object/apply:os.system [true]\n",
        [
            "config.yaml:10:4: x: the YAML tag '!!python/object/apply:os.system' is not "
            "supported here"
        ],
    ),
    (
        "binary junk",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        ["config.yaml:1:1: not UTF-8 text (byte 0x89); save the file as UTF-8"],
    ),
    (
        "control characters",
        b"archive:\n  path: a\x00b\n",
        ["config.yaml:2:10: U+0000 is not allowed in YAML (is this a binary file?)"],
    ),
    (
        "Latin-1 text",
        b"archive:\n  path: caf\xe9\n",
        ["config.yaml:2:12: not UTF-8 text (byte 0xe9); save the file as UTF-8"],
    ),
    (
        "top-level list",
        "- archive\n- people\n",
        ["config.yaml:1:1: the top level must be a mapping of keys, not a list"],
    ),
    (
        "empty file",
        "",
        [
            "config.yaml:1:1: the file is empty (expected keys such as archive:, contacts: and "
            "people:)"
        ],
    ),
    (
        "two documents",
        BASE + "---\nmore: 1\n",
        ["config.yaml:10:1: expected a single document in the stream, but found another document"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_config_gets_exact_lines(
    in_tmp: Path, text: str | bytes, expected: list[str]
) -> None:
    """Each broken config raises ConfigError with exactly these located lines."""
    path = in_tmp / "config.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    want = [line.replace("<dir>", str(in_tmp)) for line in expected]
    assert problems("config.yaml") == want


def test_missing_file(in_tmp: Path) -> None:
    """A path with no file behind it is one line, not a FileNotFoundError."""
    assert problems("config.yaml") == ["config.yaml:1:1: no such file"]


def test_directory(in_tmp: Path) -> None:
    """A directory given as the config is one line, not an IsADirectoryError."""
    (in_tmp / "etc").mkdir()
    assert problems("etc") == ["etc:1:1: is a directory, not a config file"]


def test_fifo_is_refused_without_waiting(in_tmp: Path) -> None:
    """A named pipe is refused at once instead of blocking until someone writes to it."""
    os.mkfifo(in_tmp / "config.yaml")
    assert problems("config.yaml") == ["config.yaml:1:1: is not a regular file"]


def test_file_too_large(in_tmp: Path) -> None:
    """A file over 16 MiB is refused before it is parsed."""
    (in_tmp / "config.yaml").write_bytes(b"#" * (16 * 1024 * 1024 + 1))
    assert problems("config.yaml") == ["config.yaml:1:1: the file is larger than 16 MiB"]


def test_every_problem_is_reported_in_file_order(in_tmp: Path) -> None:
    """Problems from reading, validating and cross-checking all come back, sorted by place."""
    text = (
        BASE.replace("role: lawyer", "role: boss")
        + "    emials: [x@smith.example]\n"
        + "    phones: ['+44 20 7946 0958', '${NOCONTACT_TEST_UNSET}']\n"
        + "  - id: mark\n    name: Mark Again\n"
    )
    (in_tmp / "config.yaml").write_text(text, encoding="utf-8")
    assert problems("config.yaml") == [
        "config.yaml:5:11: contacts[0].role: expected 'lawyer' or 'contact', got 'boss'",
        "config.yaml:10:5: people[0].emials: unknown key (did you mean 'emails'?)",
        "config.yaml:11:34: people[0].phones[1]: environment variable is not set: "
        "NOCONTACT_TEST_UNSET",
    ]
    fixed = text.replace("boss", "lawyer").replace("emials", "emails")
    (in_tmp / "config.yaml").write_text(fixed.replace(", '${NOCONTACT_TEST_UNSET}'", ""))
    assert problems("config.yaml") == [
        "config.yaml:12:9: people[1].id: already used by people[0]: rule ids must name one "
        "entry only",
    ]


def test_example_loads() -> None:
    """config.example.yaml is a working config, with phones read in its default region."""
    config = load_config(EXAMPLE)
    assert isinstance(config, Config)
    assert config.people[0].id == "mark"
    assert config.people[0].phones[0] == "+12125550199"
    assert config.archive.path == str(REPO / "var" / "archive")
    assert all(contact.age_recipient or contact.demo for contact in config.contacts)


def _schema_paths(schema: dict[str, Any]) -> set[str]:
    definitions = schema.get("$defs", {})

    def walk(node: dict[str, Any], prefix: str) -> Iterator[str]:
        if "$ref" in node:
            node = definitions[node["$ref"].rsplit("/", 1)[-1]]
        for alternative in node.get("anyOf", []):
            yield from walk(alternative, prefix)
        if "items" in node:
            yield from walk(node["items"], prefix + "[]")
        for name, sub in node.get("properties", {}).items():
            path = f"{prefix}.{name}" if prefix else name
            yield path
            yield from walk(sub, path)

    return set(walk(schema, ""))


def _data_paths(data: object, prefix: str = "") -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from _data_paths(value, path)
    elif isinstance(data, list):
        for item in data:
            yield from _data_paths(item, prefix + "[]")


# Keys the example can only show commented out: TLS needs real certificate files, and
# the IMAP watcher needs a real mailbox to log in to.
_IMAP = "channels.imap"
_ACCOUNT = f"{_IMAP}.accounts[]"
_SMS = "channels.sms"
COMMENTED_ALTERNATIVES = {
    "channels.smtp.tls_cert_file", "channels.smtp.tls_key_file", _IMAP, f"{_IMAP}.state_dir",
    f"{_IMAP}.accounts", *(f"{_ACCOUNT}.{key}" for key in (
        "name", "host", "port", "tls", "ca_file", "username", "password_file", "folders",
        "held_removal", "idle_seconds", "mode", "deliver", "deliver_recipient",
        "oauth2_command", "poll_seconds", "move_pulled_to")),
    _SMS, *(f"{_SMS}.{key}" for key in (
        "listen", "public_url", "account_sid", "auth_token_file", "number", "forward_to",
        "voicemail_greeting", "ring_tone", "redact_at_provider", "reconcile_every", "api_base_url",
        "state_dir")),
    "contacts[].portal", "portal", *(f"portal.{key}" for key in (
        "listen", "public_url", "state_dir", "tls_cert_file", "tls_key_file",
        "trusted_proxies", "session_idle_minutes", "session_max_hours")),
    "contacts[].alerts", "contacts[].alerts.tiers", "contacts[].alerts.transports", "alerts",
    *(f"alerts.{key}" for key in (
        "children", "digest", "digest.at", "digest.every", "digest.weekday", "escalate_after",
        "extra_terms", "extra_terms.elevated", "extra_terms.urgent", "places", "quiet_hours",
        "quiet_hours.end", "quiet_hours.start", "timezone", "transports")),
    "people[].court_order", *(f"people[].court_order.{key}" for key in (
        "children", "topics", "channels", "relay", "emergency_terms", "relay_within",
        "auto_card", "order_file")),
    "outbound", *(f"outbound.{key}" for key in (
        "host", "port", "tls", "username", "password_file", "from", "ca_file")),
    "witnesses", "witnesses[].url", "witnesses[].key", "archive.checkpoint_every",
    "replicate", *(f"replicate.{key}" for key in (
        "endpoint", "bucket", "prefix", "credentials_file", "region", "retention_days",
        "every", "state_file")),
}  # fmt: skip


def test_example_and_schema_name_the_same_keys() -> None:
    """Every key the schema knows is in the example, and every key in the example is known."""
    text = EXAMPLE.read_text(encoding="utf-8")
    in_example = set(_data_paths(yaml.safe_load(text)))
    in_schema = _schema_paths(json_schema())
    assert in_example <= in_schema
    assert in_schema - in_example == COMMENTED_ALTERNATIVES
    for path in COMMENTED_ALTERNATIVES:
        key = path.rsplit(".", 1)[-1]
        assert re.search(rf"#\s+(- )?{re.escape(key)}:", text), key


def test_every_example_key_has_a_comment_above_its_first_use() -> None:
    """Each key in the example is documented by a comment on the line above its first use."""
    document, found = read_document(EXAMPLE, {})
    assert found == []
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    first_use: dict[str, int] = {}
    for loc, spot in sorted(document.keys.items(), key=lambda item: item[1].line):
        path = ".".join(str(part) for part in loc if isinstance(part, str))
        first_use.setdefault(path, spot.line)
    undocumented = [
        path
        for path, line in first_use.items()
        if not lines[line - 2].strip().removeprefix("- ").startswith("#")
    ]
    assert undocumented == []


def test_json_schema_declares_its_dialect() -> None:
    """json_schema() names draft 2020-12 and a title, and forbids unknown top-level keys."""
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "nocontact config"
    assert schema["additionalProperties"] is False
    assert {"archive", "contacts", "people"} <= set(schema["required"])


def test_env_references_and_escaped_dollars(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """${NAME} is replaced by the environment variable's value and $$ is a literal $."""
    monkeypatch.setenv("NOCONTACT_TEST_VAULT", "vault")
    monkeypatch.setenv("NOCONTACT_TEST_KEY", RECIPIENT)
    text = BASE.replace("./archive", "${NOCONTACT_TEST_VAULT}/$$HOME-${NOCONTACT_TEST_VAULT}")
    text = text.replace(f"age_recipient: {RECIPIENT}", "age_recipient: ${NOCONTACT_TEST_KEY}")
    (in_tmp / "config.yaml").write_text(text, encoding="utf-8")
    config = load_config("config.yaml")
    assert config.archive.path == str(in_tmp / "vault" / "$HOME-vault")
    assert config.contacts[0].age_recipient == RECIPIENT


def test_env_values_never_appear_in_errors(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid value read from the environment is shown as its ${NAME}, not its content."""
    monkeypatch.setenv("NOCONTACT_TEST_SECRET", "hunter2-not-a-key")
    text = BASE.replace(RECIPIENT, "${NOCONTACT_TEST_SECRET}") + "    emails: ['$${x']\n"
    (in_tmp / "config.yaml").write_text(text, encoding="utf-8")
    lines = problems("config.yaml")
    assert lines[0].startswith("config.yaml:6:20: contacts[0].age_recipient: not an age X25519")
    assert "hunter2" not in "\n".join(lines)
    assert lines[1] == (
        "config.yaml:10:14: people[0].emails[0]: '${x' is not an email address "
        "(expected name@domain)"
    )


def test_unclosed_env_reference(in_tmp: Path) -> None:
    """A '${' that does not close as ${NAME} is an error that says how to write a '$'."""
    (in_tmp / "config.yaml").write_text(BASE.replace("./archive", "'${oops'"), encoding="utf-8")
    assert problems("config.yaml") == [
        "config.yaml:2:9: archive.path: write ${NAME} for an environment variable, or $$ for a '$'"
    ]


def test_recipient_file_is_read_next_to_the_config(tmp_path: Path) -> None:
    """age_recipient_file is read relative to the config's directory and fills age_recipient."""
    (tmp_path / "etc" / "keys").mkdir(parents=True)
    key_file = tmp_path / "etc" / "keys" / "dana.age"
    key_file.write_text(f"# Dana's public key\n\n{RECIPIENT}\n", encoding="utf-8")
    text = BASE.replace(f"age_recipient: {RECIPIENT}", "age_recipient_file: keys/dana.age")
    (tmp_path / "etc" / "config.yaml").write_text(text, encoding="utf-8")
    config = load_config(tmp_path / "etc" / "config.yaml")
    assert config.contacts[0].age_recipient == RECIPIENT
    assert config.contacts[0].age_recipient_file == str(key_file)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            f"{SECRET_KEY}\n",
            "<file> holds a private key: give only the public key (age1...), "
            "which 'nocontact contact keygen' prints; the daemon must never hold the private key",
        ),
        (
            "age1notakey\n",
            "<file>: not an age X25519 recipient (expected 'age1...', as printed "
            "by 'nocontact contact keygen' or 'age-keygen -y')",
        ),
        (
            f"{RECIPIENT}\n{RECIPIENT}\n",
            "<file> must hold exactly one age public key (age1...), found 2 lines",
        ),
        ("# empty\n", "<file> must hold exactly one age public key (age1...), found 0 lines"),
    ],
    ids=["private key", "not a recipient", "two recipients", "no recipient"],
)
def test_unusable_recipient_file(in_tmp: Path, content: str, expected: str) -> None:
    """A key file that does not hold exactly one public key is an error at its key."""
    (in_tmp / "dana.age").write_text(content, encoding="utf-8")
    text = BASE.replace(f"age_recipient: {RECIPIENT}", "age_recipient_file: dana.age")
    (in_tmp / "config.yaml").write_text(text, encoding="utf-8")
    message = expected.replace("<file>", str(in_tmp / "dana.age"))
    assert problems("config.yaml") == [
        f"config.yaml:6:25: contacts[0].age_recipient_file: {message}"
    ]


def test_relative_archive_path_is_resolved_against_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative archive.path is read from the config file's directory, not the cwd."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "etc" / "config.yaml").write_text(BASE, encoding="utf-8")
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = load_config(os.path.join("..", "etc", "config.yaml"))
    assert config.archive.path == str(tmp_path / "etc" / "archive")


def test_absolute_archive_path_is_kept(in_tmp: Path) -> None:
    """An absolute archive.path is used as written."""
    text = BASE.replace("./archive", "/srv/nocontact/archive")
    (in_tmp / "config.yaml").write_text(text, encoding="utf-8")
    assert load_config("config.yaml").archive.path == "/srv/nocontact/archive"


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file that each hypothesis example overwrites."""
    return tmp_path_factory.mktemp("fuzz") / "config.yaml"


def _only_config_error(path: Path) -> None:
    """Load `path`; anything but a Config or a ConfigError of one-line problems fails."""
    try:
        load_config(path)
    except ConfigError as error:
        found = error.problems
    else:
        return
    assert found
    for problem in found:
        assert "\n" not in str(problem)
        assert problem.line >= 1
        assert problem.column >= 1


FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_raise_config_error(fuzz_file: Path, data: bytes) -> None:
    """Whatever bytes the file holds, load_config raises nothing but ConfigError."""
    fuzz_file.write_bytes(data)
    _only_config_error(fuzz_file)


@FUZZ
@given(st.text(max_size=2000))
def test_arbitrary_text_only_raises_config_error(fuzz_file: Path, text: str) -> None:
    """Whatever text the file holds, load_config raises nothing but ConfigError."""
    fuzz_file.write_text(text, encoding="utf-8", errors="surrogatepass")
    _only_config_error(fuzz_file)


_YAMLISH = st.sampled_from([*"[]{}:-,#&*!|>'\"%@` \n\t", "\n  ", "\n- ", ": ", "${", "$$"])


@FUZZ
@given(st.lists(st.one_of(_YAMLISH, st.text(max_size=5)), max_size=80))
def test_yaml_shaped_noise_only_raises_config_error(fuzz_file: Path, parts: list[str]) -> None:
    """Text made of YAML's own punctuation raises nothing but ConfigError."""
    fuzz_file.write_text(BASE + "".join(parts), encoding="utf-8", errors="surrogatepass")
    _only_config_error(fuzz_file)


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.dates()
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths_in(data: object, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths_in(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths_in(value, (*prefix, index))


_EXAMPLE_DATA = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
_EXAMPLE_PATHS = list(_paths_in(_EXAMPLE_DATA))[1:]


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(_EXAMPLE_PATHS), _VALUES), min_size=1, max_size=3))
def test_example_with_values_replaced_only_raises_config_error(
    fuzz_file: Path, changes: list[tuple[tuple[Any, ...], Any]]
) -> None:
    """The example with any values swapped for any others loads or raises only ConfigError."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for path, value in changes:
        target = data
        try:
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    fuzz_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    (fuzz_file.parent / "var").mkdir(exist_ok=True)
    _only_config_error(fuzz_file)


SMS = """\
default_region: US
channels:
  sms:
    public_url: https://home.example/twilio/
    account_sid: AC0123456789abcdef0123456789abcdef
    number: "+1 555 010 7777"
    forward_to: (555) 010-8888
"""


def test_sms_channel_reads_numbers_urls_and_token_from_env(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """channels.sms: numbers to E.164, the URL without its final '/', the token from the env."""
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret")
    (in_tmp / "config.yaml").write_text(BASE + SMS, encoding="utf-8")
    sms = load_config("config.yaml").channels.sms
    assert sms is not None
    assert (sms.number, sms.forward_to) == ("+15550107777", "+15550108888")
    assert sms.public_url == "https://home.example/twilio"
    assert sms.api_base_url == "https://api.twilio.com"
    assert sms.redact_at_provider is True
    assert sms.state_dir == str(in_tmp / "var" / "sms")


def test_sms_channel_problems_are_located(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad SID, a URL with a query, no token and forward_to = number are each one line."""
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    text = (
        SMS.replace("AC0123456789abcdef0123456789abcdef", "AC123")
        .replace("twilio/", "twilio?x=1")
        .replace("(555) 010-8888", "555.010.7777")
    )
    (in_tmp / "config.yaml").write_text(BASE + text, encoding="utf-8")
    found = problems("config.yaml")
    assert len(found) == 2  # shape first: meaning is checked once the shape is valid
    assert "channels.sms.public_url" in found[0]
    assert "query" in found[0]
    assert "channels.sms.account_sid" in found[1]
    (in_tmp / "config.yaml").write_text(BASE + SMS.replace("(555) 010-8888", "555.010.7777"))
    found = problems("config.yaml")
    assert len(found) == 2
    assert "no Twilio auth token" in found[0]
    assert "channels.sms.forward_to" in found[1]


IMAP = """\
channels:
  imap:
    accounts:
      - name: home
        host: {host}
        tls: {tls}
        username: sam
        password_file: password
"""


def test_a_secret_file_others_may_read_is_refused(in_tmp: Path) -> None:
    """A password (or token, or TLS key) file with group or other access is one line naming
    its mode; at 0600 it is taken."""
    password = in_tmp / "password"
    password.write_text("hunter2")
    password.chmod(0o644)
    (in_tmp / "config.yaml").write_text(BASE + IMAP.format(host="imap.example", tls="implicit"))
    (found,) = problems("config.yaml")
    assert "channels.imap.accounts[0].password_file" in found
    assert "can be read by other users (mode 0644)" in found
    assert "hunter2" not in found
    password.chmod(0o600)
    assert load_config("config.yaml").channels.imap is not None


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.53"])
def test_tls_none_is_for_loopback_hosts(in_tmp: Path, host: str) -> None:
    """tls: none (the password in the clear) is taken for a server on this machine..."""
    write_secret(in_tmp / "password", "hunter2")
    (in_tmp / "config.yaml").write_text(BASE + IMAP.format(host=host, tls="none"))
    assert load_config("config.yaml").channels.imap is not None


@pytest.mark.parametrize("host", ["imap.example", "10.0.0.2", "localhost.example"])
def test_tls_none_is_refused_for_any_other_host(in_tmp: Path, host: str) -> None:
    """...and refused, in one line, for any other."""
    write_secret(in_tmp / "password", "hunter2")
    (in_tmp / "config.yaml").write_text(BASE + IMAP.format(host=host, tls="none"))
    (found,) = problems("config.yaml")
    assert "channels.imap.accounts[0].tls" in found
    assert "in the clear" in found


def test_move_held_to_is_refused_in_one_line_saying_why(in_tmp: Path) -> None:
    """An account that still sets move_held_to (held mail kept in a folder of her own
    mailbox) is refused at that key, in one line saying held mail never stays there."""
    write_secret(in_tmp / "password", "hunter2")
    text = BASE + IMAP.format(host="imap.example", tls="implicit") + "        move_held_to: Held\n"
    (in_tmp / "config.yaml").write_text(text)
    line = text.count("\n")
    assert problems("config.yaml") == [
        f"config.yaml:{line}:9: channels.imap.accounts[0].move_held_to: no longer a setting: "
        "held mail never stays in the survivor's mailbox, not even in a folder of its own; it "
        "is sealed, then removed from the mailbox entirely (see held_removal)"
    ]


@pytest.mark.parametrize("how", ["auto", "expunge", "trash"])
def test_held_removal_takes_its_three_words(in_tmp: Path, how: str) -> None:
    """held_removal is auto by default and takes expunge or trash; any other word is one line."""
    write_secret(in_tmp / "password", "hunter2")
    text = BASE + IMAP.format(host="imap.example", tls="implicit")
    (in_tmp / "config.yaml").write_text(text)
    imap = load_config("config.yaml").channels.imap
    assert imap is not None
    assert imap.accounts[0].held_removal == "auto"
    (in_tmp / "config.yaml").write_text(text + f"        held_removal: {how}\n")
    imap = load_config("config.yaml").channels.imap
    assert imap is not None
    assert imap.accounts[0].held_removal == how
    (in_tmp / "config.yaml").write_text(text + "        held_removal: Held\n")
    (found,) = problems("config.yaml")
    assert "channels.imap.accounts[0].held_removal: expected 'auto', 'expunge' or 'trash'" in found


def test_a_contact_s_custody_key_is_checked(in_tmp: Path) -> None:
    """custody_key takes the line keygen prints, and anything else is a located problem."""
    key = "ed25519:" + "A" * 43 + "="
    text = BASE.replace(f"age_recipient: {RECIPIENT}",
                        f"age_recipient: {RECIPIENT}\n    custody_key: {key}")  # fmt: skip
    (in_tmp / "config.yaml").write_text(text, encoding="utf-8")
    assert load_config("config.yaml").contacts[0].custody_key == key
    (in_tmp / "config.yaml").write_text(text.replace(key, "ed25519:c2hvcnQ="), encoding="utf-8")
    [line] = problems("config.yaml")
    assert "contacts[0].custody_key: custody key is not a 32-byte Ed25519 key" in line


PORTAL = BASE + "portal:\n  public_url: https://home.example/portal\n"


def test_trusted_proxies_take_addresses_and_networks(in_tmp: Path) -> None:
    """portal.trusted_proxies is empty by default and keeps addresses and CIDR networks,
    written as ipaddress writes them."""
    (in_tmp / "config.yaml").write_text(PORTAL, encoding="utf-8")
    portal = load_config("config.yaml").portal
    assert portal is not None
    assert portal.trusted_proxies == []
    text = PORTAL + "  trusted_proxies: [127.0.0.1, '::1', 10.0.0.0/8, 'FD00::/8']\n"
    (in_tmp / "config.yaml").write_text(text, encoding="utf-8")
    portal = load_config("config.yaml").portal
    assert portal is not None
    assert portal.trusted_proxies == ["127.0.0.1/32", "::1/128", "10.0.0.0/8", "fd00::/8"]


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ("nginx.local", "'nginx.local' is not an IP address or network (expected e.g. "
         "127.0.0.1, ::1 or 10.0.0.0/8)"),
        ("10.0.0.1/8", "'10.0.0.1/8' is not an IP address or network (host bits set: write "
         "the network's first address) (expected e.g. 127.0.0.1, ::1 or 10.0.0.0/8)"),
        ("'127.0.0.1:8080'", "'127.0.0.1:8080' is not an IP address or network (expected "
         "e.g. 127.0.0.1, ::1 or 10.0.0.0/8)"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP address or network (expected e.g. "
         "127.0.0.1, ::1 or 10.0.0.0/8)"),
    ],
)  # fmt: skip
def test_a_bad_trusted_proxy_is_one_located_line(in_tmp: Path, entry: str, said: str) -> None:
    """An entry that is not an IP address or network is one line at that entry, saying
    what is expected; the good entries beside it are not mentioned."""
    text = PORTAL + f"  trusted_proxies: [{entry}, 127.0.0.1]\n"
    (in_tmp / "config.yaml").write_text(text, encoding="utf-8")
    assert problems("config.yaml") == [f"config.yaml:12:21: portal.trusted_proxies[0]: {said}"]


@pytest.mark.parametrize(
    "url", ["https://home.example/a b", "https://home.example/../x", "https://home.example/p%20x"]
)
def test_a_portal_url_path_must_be_plain_segments(in_tmp: Path, url: str) -> None:
    """The portal serves under public_url's path, so a path it could not serve or link to
    (spaces, escapes, dot segments) is one line; a plain prefix loads."""
    (in_tmp / "config.yaml").write_text(PORTAL.replace("https://home.example/portal", url))
    [line] = problems("config.yaml")
    assert "portal.public_url:" in line
    assert "has a path the portal cannot serve under" in line
    (in_tmp / "config.yaml").write_text(PORTAL.replace("/portal", "/home-server/portal.v2/"))
    portal = load_config("config.yaml").portal
    assert portal is not None
    assert portal.public_url == "https://home.example/home-server/portal.v2"
