"""Benchmark: `nocontact contact export` of 10,000 held items, its wall time and peak memory.

Run: .venv/bin/python bench/export.py [--items N] [--dir DIR] [--keep] [--profile]

Everything lives in a temporary directory under DIR (default <repo>/var, which git ignores),
removed at the end unless --keep.

1. Build (not timed against the goal): a contact key from `nocontact contact keygen`; an
   archive (`proxy.archive.Archive`, asyncio, 16 producers) holding N items decided by the
   test rulebook (tests/factories.py: mark's addresses, domain, display name and numbers,
   carol the intermediary, and third parties who mention him), each received at a random
   moment of the 18 months before 2026-03-01, held in that order. The mix, from a fixed seed:
     - emails (~84%): log-uniform 1-30 KB of text; a quarter HTML (multipart/alternative
       with a tracking pixel), a tenth with a 5-60 KB photo or PDF attached, one in 500
       a ~1 MB attachment;
     - texts (~15%): a Twilio webhook (the real form fields, signed with
       RequestValidator) captured with `capture(kind=ArrivalKind.TEXT)`, one in six an MMS with a
       20-200 KB photo, normalized with `normalize_sms` as the pipeline does;
     - voicemails (~0.5%): `capture(kind=ArrivalKind.VOICEMAIL)` of the recording webhook with
       ~100 KB of WAV audio, channel voice.
   Each is sealed and appended (`archive.seal` + `archive.append`, which is all `hold`
   does, so the sealed size is known); closing the archive signs its tail.
2. `python -m proxy contact export` in a child process: wall time, and its own peak RSS
   (GNU time's %M, or a bare launcher's RUSAGE_CHILDREN: see `measured` for why not
   this process's own rusage of its children).
3. The bundle unzipped; its verify.py run in a child the same way (it must say "bundle OK"
   for N items); manifest.json must list N items; report.pdf's size and pages (pypdf).
4. `python -m proxy contact list` on the same archive, measured the same way (N rows).
5. --profile: the export once more in this process under cProfile (via proxy.cli.main),
   printing the top functions by cumulative and by own time.

Goal (issue 7): export of 10,000 items in under 60 s; its peak memory is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import email.policy
import email.utils
import html
import io
import json
import os
import pstats
import random
import subprocess
import sys
import time
import urllib.parse
import wave
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from pypdf import PdfReader
from twilio.request_validator import RequestValidator

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/export.py` puts bench/, not the repo, first
    sys.path.insert(0, str(REPO))

from bench.procs import scratch  # noqa: E402
from proxy.archive import Archive, EntryKind  # noqa: E402
from proxy.channels.sms.capture import ArrivalKind, Webhook, capture  # noqa: E402
from proxy.channels.sms.provider import Media  # noqa: E402
from proxy.cli import main as nocontact  # noqa: E402
from proxy.message import Channel, Decision, InboundMessage  # noqa: E402
from proxy.normalize import normalize_email, normalize_sms  # noqa: E402
from proxy.rules import Rulebook, decide  # noqa: E402
from tests.factories import make_rules  # noqa: E402

GOAL_SECONDS = 60.0
SEED = 7
PRODUCERS = 16
END = datetime(2026, 3, 1, tzinfo=UTC)
SPAN = timedelta(days=548)  # ~18 months
# Without GNU time: a bare interpreter runs the command as its one child and writes that
# child's peak RSS in KiB (its own ~10 MiB, inherited over the fork, is then the floor).
LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
            "usage = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "open(sys.argv[1], 'w').write(str(usage.ru_maxrss)); sys.exit(code)")  # fmt: skip
TEXT_SHARE, VOICEMAIL_SHARE = 0.15, 0.005
HTML_SHARE, ATTACHED_SHARE, LARGE_SHARE, MMS_SHARE = 0.25, 0.10, 0.002, 1 / 6
PUBLIC_URL = "https://bench.example/twilio"
HOME, HOME_ADDRESS, HOME_NUMBER = "Sam <sam@home.example>", "sam@home.example", "+15550107777"
ACCOUNT = "AC" + "5e" * 16
EMAIL_SENDERS = (  # (weight, From, envelope sender, whether the text must mention him)
    (45, "Mark Smith <mark.smith@gmail.com>", "mark.smith@gmail.com", False),
    (15, "Mark <mark@smith-family.example>", "mark@smith-family.example", False),
    (10, "Mark S <m.smith@markscompany.example>", "bounce@markscompany.example", False),
    (5, "M. Smith <throwaway.4471@example.com>", "throwaway.4471@example.com", False),
    (10, "Carol Smith <carol@example.net>", "carol@example.net", False),
    (15, "Jo Park <jo.park@example.org>", "jo.park@example.org", True),
)
TEXT_SENDERS = ((60, "+15550100199", False), (15, "+442079460958", False),
                (15, "+15550100142", False), (10, "+15550106543", True))  # fmt: skip
MENTIONS = ("I saw Mark Smith outside the school again today.",
            "Marky asked me to pass this on to you.",
            "Mark Smith was asking where you are living now.")  # fmt: skip
SUBJECTS = ("please", "Saturday", "the kids", "just talk to me", "re: the house", "sorry",
            "read this", "pickup", "Fwd: photos", "court", "why", "birthday")  # fmt: skip
WORDS = ("you cannot keep me away from my own kids I will be at the school on saturday and "
         "you know what happens if you call the police again answer your phone I know where "
         "you are staying now please I just want to talk the meeting tomorrow is at ten bring "
         "the forms and the lunch money thanks for the photos from the party").split()  # fmt: skip


class BenchError(Exception):
    """An expected failure: printed as one line, exit status 1."""


# -- the held items -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Held:
    kind: str  # "email", "text" or "voicemail"
    message: InboundMessage
    decision: Decision
    extras: dict[str, object] | None = None


class Corpus:
    """N held items in received order, made one at a time from a fixed seed."""

    def __init__(self, rules: Rulebook, count: int) -> None:
        self.rules = rules
        self.rng = random.Random(SEED)
        self.token = self.rng.randbytes(16).hex()
        offsets = sorted(self.rng.random() for _ in range(count))
        self.moments = [END - SPAN + SPAN * offset for offset in offsets]
        line_words = [self.rng.choice(WORDS) for _ in range(60_000)]
        self.prose = "".join(w + ("\n" if i % 13 == 12 else " ") for i, w in enumerate(line_words))

    def text(self, size: int) -> str:
        """About `size` characters of prose, from a random place (at a word's start)."""
        start = self.prose.find(" ", self.rng.randrange(len(self.prose) - size - 100)) + 1
        return self.prose[start : start + size].rstrip() + "\n"

    def sid(self, prefix: str) -> str:
        return prefix + self.rng.randbytes(16).hex()

    def items(self) -> Iterator[Held]:
        for number, moment in enumerate(self.moments):
            draw = self.rng.random()
            if draw < VOICEMAIL_SHARE:
                yield self.voicemail(moment)
            elif draw < VOICEMAIL_SHARE + TEXT_SHARE:
                yield self.sms(moment)
            else:
                yield self.email(number, moment)

    def _held(self, kind: str, message: InboundMessage, extras: dict[str, object] | None) -> Held:
        decision = decide(message, self.rules)
        if not decision.held:
            raise BenchError(f"a generated {kind} was not held ({decision.reason}): fix the bench")
        return Held(kind=kind, message=message, decision=decision, extras=extras)

    def email(self, number: int, moment: datetime) -> Held:
        rng = self.rng
        _, author, envelope, mention = rng.choices(EMAIL_SENDERS, [s[0] for s in EMAIL_SENDERS])[0]
        size = int(1024 * 30 ** rng.random())
        body = (rng.choice(MENTIONS) + "\n" if mention else "") + self.text(size)
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"], message["To"] = author, HOME
        message["Subject"] = rng.choice(SUBJECTS)
        message["Date"] = email.utils.format_datetime(moment)
        host = envelope.split("@")[1]
        message["Message-ID"] = f"<{number}.{rng.randbytes(6).hex()}@{host}>"
        if rng.random() < 0.5:
            message["Authentication-Results"] = f"mx.home.example; spf=pass smtp.mailfrom={host}"
        message.set_content(body)
        if rng.random() < HTML_SHARE:
            paragraphs = "".join(f"<p>{html.escape(p)}</p>\n" for p in body.split("\n") if p)
            message.add_alternative(
                f"<html><body>{paragraphs}<img src='https://t.example/{number}.gif' width=1>"
                "</body></html>", subtype="html",
            )  # fmt: skip
        if rng.random() < LARGE_SHARE:
            message.add_attachment(b"%PDF-1.7\n" + rng.randbytes(760_000), maintype="application",
                                   subtype="pdf", filename="scan.pdf")  # fmt: skip
        elif rng.random() < ATTACHED_SHARE:
            data = b"\xff\xd8\xff\xe0" + rng.randbytes(rng.randrange(5_000, 60_000))
            message.add_attachment(data, maintype="image", subtype="jpeg", filename="photo.jpg")
        raw = message.as_bytes()
        normalized = normalize_email(raw, envelope_sender=envelope, recipients=(HOME_ADDRESS,),
                                     received_at=moment, default_region="US")  # fmt: skip
        return self._held("email", normalized, None)

    def _webhook(self, path: str, params: dict[str, str]) -> Webhook:
        url = PUBLIC_URL + path
        signature = str(RequestValidator(self.token).compute_signature(url, params))
        return Webhook(url=url, body=urllib.parse.urlencode(params).encode(), signature=signature)

    def sms(self, moment: datetime) -> Held:
        rng = self.rng
        _, sender, mention = rng.choices(TEXT_SENDERS, [s[0] for s in TEXT_SENDERS])[0]
        text = (rng.choice(MENTIONS) + " " if mention else "") + self.text(rng.randrange(20, 300))
        sid = self.sid("SM")
        params = {"ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0",
                  "SmsSid": sid, "SmsStatus": "received", "Body": text.strip(),
                  "FromCountry": "US", "To": HOME_NUMBER, "NumSegments": "1",
                  "MessageSid": sid, "AccountSid": ACCOUNT, "From": sender,
                  "ApiVersion": "2010-04-01"}  # fmt: skip
        media: list[Media] = []
        if rng.random() < MMS_SHARE:
            media_sid = self.sid("ME")
            params["NumMedia"] = "1"
            params["MediaContentType0"] = "image/jpeg"
            params["MediaUrl0"] = (f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/"
                                   f"Messages/{sid}/Media/{media_sid}")  # fmt: skip
            data = b"\xff\xd8\xff\xe0" + rng.randbytes(rng.randrange(20_000, 200_000))
            media.append(Media(sid=media_sid, content_type="image/jpeg", data=data))
        raw = capture(kind=ArrivalKind.TEXT, webhook=self._webhook("/sms", params), media=media)
        message = normalize_sms(sender=sender, recipient=HOME_NUMBER, text=params["Body"], raw=raw,
                                received_at=moment, default_region="US", provider_id=sid,
                                channel=Channel.SMS)  # fmt: skip
        return self._held("text", message, {"provider": "twilio", "voicemail": False})

    def voicemail(self, moment: datetime) -> Held:
        rng = self.rng
        call, recording = self.sid("CA"), self.sid("RE")
        audio = io.BytesIO()
        with wave.open(audio, "wb") as sound:
            sound.setnchannels(1)
            sound.setsampwidth(2)
            sound.setframerate(8000)
            sound.writeframes(rng.randbytes(2 * 8000 * rng.randrange(5, 8)))
        seconds = str(len(audio.getvalue()) // 16_000)
        params = {"AccountSid": ACCOUNT, "CallSid": call, "RecordingSid": recording,
                  "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/"
                                  f"Recordings/{recording}",
                  "RecordingStatus": "completed", "RecordingDuration": seconds,
                  "RecordingChannels": "1", "RecordingSource": "RecordVerb",
                  "RecordingStartTime": email.utils.format_datetime(moment)}  # fmt: skip
        raw = capture(kind=ArrivalKind.VOICEMAIL, webhook=self._webhook("/voice/recording", params),
                      media=[Media(sid=recording, content_type="audio/x-wav",
                                   data=audio.getvalue())])  # fmt: skip
        message = normalize_sms(sender="+15550100199", recipient=HOME_NUMBER, text="", raw=raw,
                                received_at=moment, default_region="US", provider_id=recording,
                                channel=Channel.VOICE)  # fmt: skip
        return self._held("voicemail", message, {"provider": "twilio", "voicemail": True})


@dataclass(slots=True)
class Built:
    kinds: Counter[str]
    sealed_bytes: int = 0
    original_bytes: int = 0
    seconds: float = 0.0


async def build_archive(root: Path, recipient: str, count: int) -> Built:
    """Hold `count` items from PRODUCERS tasks, in received order; close (signs the tail)."""
    built = Built(kinds=Counter())
    items = Corpus(make_rules(), count).items()
    start = time.perf_counter()
    archive = await Archive.open(root, recipients=[recipient])
    try:

        async def producer() -> None:
            for held in items:  # one shared iterator: next() never awaits
                sealed = await archive.seal(held.message, held.decision, extras=held.extras)
                await archive.append(EntryKind.SEALED, sealed)
                built.kinds[held.kind] += 1
                built.sealed_bytes += len(sealed)
                built.original_bytes += len(held.message.raw)

        await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
    finally:
        await archive.close()
    built.seconds = time.perf_counter() - start
    return built


# -- measured children ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    seconds: float
    peak_mib: float  # the child's own maximum resident set
    stdout: str


def measured(name: str, command: list[str], *, cwd: Path, logs: Path) -> Run:
    """Run `command` to its end through a small launcher; wall time and the command's peak RSS.

    Not a direct child of this process: Linux carries the parent's resident set over a
    fork into the child's ru_maxrss, which would count this process's archive-building
    memory as the command's. GNU time (C, ~2 MiB) launches it when present, else LAUNCHER.
    """
    out_path, err_path, rss_path = (logs / f"{name}.{part}" for part in ("out", "err", "rss"))
    launcher = (["/usr/bin/time", "-f", "%M", "-o", str(rss_path)] if Path("/usr/bin/time").exists()
                else [sys.executable, "-I", "-S", "-c", LAUNCHER, str(rss_path)])  # fmt: skip
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        code = subprocess.call([*launcher, *command], cwd=cwd, stdin=subprocess.DEVNULL,
                               stdout=out, stderr=err)  # fmt: skip
        seconds = time.perf_counter() - start
    stdout = out_path.read_text(errors="replace")
    if code != 0:
        lines = (err_path.read_text(errors="replace") + stdout).strip().splitlines()
        raise BenchError(f"{name} exited {code}: {lines[-1] if lines else ''}")
    peak_kib = int(rss_path.read_text().split()[-1])
    return Run(seconds=seconds, peak_mib=peak_kib / 1024, stdout=stdout)


def nocontact_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy", *args]


def keygen(key: Path, logs: Path) -> str:
    run = measured("keygen", nocontact_command("contact", "keygen", "--out", str(key)),
                   cwd=REPO, logs=logs)  # fmt: skip
    for line in run.stdout.splitlines():
        if line.startswith("age1"):
            return line.strip()
    raise BenchError("contact keygen printed no age1 recipient")


def check_bundle(unpacked: Path, items: int, verify: Run) -> tuple[str, int]:
    """The verify.py verdict line and report.pdf's page count; raises unless all is right."""
    verdict = next((line for line in verify.stdout.splitlines() if line.startswith("bundle ")), "")
    if not verdict.startswith(f"bundle OK: {items} items"):
        raise BenchError(f"verify.py did not pass {items} items: {verdict or 'no verdict'}")
    manifest = json.loads((unpacked / "manifest.json").read_bytes())
    if manifest.get("item_count") != items or len(manifest.get("items", [])) != items:
        raise BenchError(f"manifest.json lists {manifest.get('item_count')} items, not {items}")
    return verdict.split(":")[0], len(PdfReader(unpacked / "report.pdf").pages)


def profile_export(arguments: list[str]) -> None:
    """The export in this process under cProfile; the top functions, printed."""
    profile = cProfile.Profile()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = profile.runcall(nocontact, arguments)
    if code != 0:
        raise BenchError(f"the profiled export exited {code}")
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    rows = [(ct, tt, nc, f"{Path(file).name}:{line} {func}")
            for (file, line, func), (_, nc, tt, ct, _) in stats.items()]  # fmt: skip
    for title, key in (("cumulative", 0), ("own time", 1)):
        print(f"profile of one in-process export, top 10 by {title}:")
        print(f"  {'cum s':>7} {'own s':>7} {'calls':>9}  function")
        for ct, tt, nc, name in sorted(rows, key=lambda row: row[key], reverse=True)[:10]:
            print(f"  {ct:>7.2f} {tt:>7.2f} {nc:>9,}  {name}")


# -- the run --------------------------------------------------------------------------------


def bench(args: argparse.Namespace, work: Path) -> None:
    logs = work / "logs"
    logs.mkdir()
    key, archive, bundle = work / "contact.key", work / "archive", work / "bundle.zip"
    built = asyncio.run(build_archive(archive, keygen(key, logs), args.items))
    reading = ["--archive", str(archive), "--identity", str(key)]
    export_args = ["contact", "export", *reading, "--out", str(bundle), "--reason", "bench"]
    export = measured("export", nocontact_command(*export_args), cwd=REPO, logs=logs)
    if f"({args.items} items;" not in export.stdout:
        raise BenchError(f"export did not write {args.items} items: {export.stdout.strip()}")
    unpacked = work / "bundle"
    with zipfile.ZipFile(bundle) as opened:
        opened.extractall(unpacked)
    verify = measured("verify", [sys.executable, "verify.py"], cwd=unpacked, logs=logs)
    verdict, pages = check_bundle(unpacked, args.items, verify)
    listing = measured("list", nocontact_command("contact", "list", *reading), cwd=REPO,
                       logs=logs)  # fmt: skip
    rows = len([line for line in listing.stdout.splitlines()[1:] if line[:6].strip().isdigit()])
    if rows != args.items:
        raise BenchError(f"contact list showed {rows} items, not {args.items}")

    kinds = built.kinds
    print(f"bench/export.py: {args.items:,} held items ({kinds['email']:,} emails, "
          f"{kinds['text']:,} texts, {kinds['voicemail']:,} voicemails; archive "
          f"{built.sealed_bytes / 1e6:,.0f} MB)")  # fmt: skip
    print(f"built in {built.seconds:.1f} s (not timed against the goal); originals "
          f"{built.original_bytes / 1e6:,.0f} MB; {os.cpu_count()} cpus")  # fmt: skip
    print(f" {'step':<24} {'wall s':>7} {'peak RSS MiB':>14}")
    for name, run in (("contact export", export), ("bundle verify.py", verify),
                      ("contact list", listing)):  # fmt: skip
        print(f" {name:<24} {run.seconds:>7.1f} {run.peak_mib:>14,.0f}")
    passed = export.seconds < GOAL_SECONDS
    print(f"goal: export < {GOAL_SECONDS:.0f} s: {'PASS' if passed else 'FAIL'}")
    print(f"bundle: {bundle.stat().st_size / 1e6:,.0f} MB, report.pdf "
          f"{(unpacked / 'report.pdf').stat().st_size / 1e6:,.1f} MB {pages:,} pages, "
          f"verify.py: {verdict}")  # fmt: skip
    if args.profile:
        profile_export(["contact", "export", *reading, "--out", str(work / "profiled.zip"),
                        "--reason", "bench profile"])  # fmt: skip
    if not passed:
        raise BenchError(f"export took {export.seconds:.1f} s, over the {GOAL_SECONDS:.0f} s goal")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--items", type=int, default=10_000, help="held items to export")
    parser.add_argument("--dir", type=Path, default=REPO / "var",
                        help="where to make the temporary directory (a real disk)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one export in-process (cProfile)")  # fmt: skip
    args = parser.parse_args()
    if args.items < 1:
        parser.error("--items must be at least 1")
    try:
        with scratch(args.dir, "bench-export-", keep=args.keep) as work:
            if args.keep:
                print(f"keeping {work}")
            bench(args, work)
    except (BenchError, OSError, ValueError) as error:
        print(f"bench/export.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
