"""`archive.checkpoint_every`: the config's bounds, and the daemon's archive signing on
that cadence (writer.py rule 3, daemon.py rule 17)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.archive import layout, writer
from proxy.archive.reader import SegmentScan, contiguous_segments, mapped
from proxy.archive.records import EntryKind
from proxy.archive.segments import segment_name
from proxy.config import load_config
from proxy.daemon import Daemon
from proxy.errors import ConfigError
from tests.factories import config_data


def _config(tmp_path: Path, **archive: Any) -> Path:
    data = config_data(archive={"path": str(tmp_path / "archive"), **archive})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _checkpoints(root: Path) -> int:
    log_dir = root / layout.LOG_DIR
    found = 0
    for number in contiguous_segments(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            for record in SegmentScan(number, buffer):
                found += record.header.kind is EntryKind.CHECKPOINT
                del record
    return found


class _ClockBeforeAMinute:
    """The writer's clock: from its first reading, 0.3 s before a whole minute that is not
    a whole ten minutes, then running as the wall's."""

    def __init__(self) -> None:
        self._offset: float | None = None

    def time(self) -> float:
        now = time.time()
        if self._offset is None:
            minute = (now // 60 + 1) * 60
            minute += 60 if minute % 600 == 0 else 0
            self._offset = minute - 0.3 - now
        return now + self._offset


def test_the_default_is_ten_minutes_and_sixty_loads(tmp_path: Path) -> None:
    """Absent, the cadence is 600 s (writer.CHECKPOINT_EVERY); 60 is taken as given."""
    assert load_config(_config(tmp_path)).archive.checkpoint_every == writer.CHECKPOINT_EVERY
    assert load_config(_config(tmp_path, checkpoint_every=60)).archive.checkpoint_every == 60


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (29, "greater than or equal to 30"),
        (3601, "less than or equal to 3600"),
        ("soon", "expected a whole number"),
        (0, "greater than or equal to 30"),
    ],
)
def test_a_cadence_out_of_bounds_is_one_located_line(
    tmp_path: Path, value: object, says: str
) -> None:
    """Below 30 s, above an hour, or not a number: one line at archive.checkpoint_every."""
    path = _config(tmp_path, checkpoint_every=value)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 1, problems
    assert f"{path}:" in problems[0]
    assert ": archive.checkpoint_every: " in problems[0]
    assert says in problems[0]


@pytest.mark.parametrize(("every", "ticks"), [(60, 1), (600, 0)])
def test_the_daemon_signs_on_the_configs_cadence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int, ticks: int
) -> None:
    """The daemon opens its archive with the config's cadence: with the writer's clock set
    a moment before a whole minute that is not a whole ten minutes, an idle archive signs
    at that minute with 60, and not with 600."""
    monkeypatch.setattr(writer, "time", _ClockBeforeAMinute())
    config = load_config(_config(tmp_path, checkpoint_every=every))
    root = tmp_path / "archive"

    async def run() -> None:
        archive = await Daemon(str(tmp_path / "config.yaml"))._open_archive(config)
        await asyncio.sleep(1.0)  # idle: nothing arrives
        await archive.close()

    asyncio.run(run())
    created, closed = 1, 1  # log.py: creating and closing the archive always sign
    assert _checkpoints(root) - created - closed == ticks
