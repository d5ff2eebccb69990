"""The holiday dates of the SLA clocks come from a disk cache, so a start need not import
the ``holidays`` library (a quarter to half a second of importing one message)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from mailtriage.config import ConfigError, load_settings
from mailtriage.holiday_cache import cached_holidays, region_problem
from mailtriage.sla.calendar import BusinessCalendar, library_holidays, use_holiday_source


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("MAILTRIAGE_CACHE_DIR", str(directory))
    return directory


def test_the_first_call_writes_the_library_dates_and_the_next_reads_them(cache_dir: Path) -> None:
    expected = library_holidays("DE", "BY", 2026)
    assert date(2026, 1, 6) in expected  # Epiphany in Bavaria
    assert cached_holidays("DE", "BY", 2026) == expected
    [directory] = cache_dir.iterdir()
    assert directory.name.startswith("holidays-")
    path = directory / "DE-BY-2026.json"
    assert sorted(json.loads(path.read_text())) == sorted(d.isoformat() for d in expected)
    # The cache answers from now on: a date only the file has is what comes back.
    path.write_text(json.dumps(["2026-03-03"]))
    assert cached_holidays("DE", "BY", 2026) == frozenset({date(2026, 3, 3)})
    # Another year or region is another file.
    assert cached_holidays("DE", "", 2026) == library_holidays("DE", "", 2026)
    assert (directory / "DE-_-2026.json").exists()


def test_an_unreadable_or_unwritable_cache_is_skipped(cache_dir: Path) -> None:
    expected = library_holidays("DE", "BY", 2027)
    cached_holidays("DE", "BY", 2027)
    [path] = cache_dir.glob("holidays-*/DE-BY-2027.json")
    path.write_text("{not json")
    assert cached_holidays("DE", "BY", 2027) == expected  # rebuilt
    assert sorted(json.loads(path.read_text())) == sorted(d.isoformat() for d in expected)


def test_a_cache_that_cannot_be_written_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # the cache directory would have to be under a file
    monkeypatch.setenv("MAILTRIAGE_CACHE_DIR", str(blocked))
    assert cached_holidays("DE", "BY", 2028) == library_holidays("DE", "BY", 2028)


def test_a_code_that_is_no_plain_code_is_not_a_file_name(cache_dir: Path) -> None:
    with pytest.raises(NotImplementedError):
        cached_holidays("../x", "", 2026)
    assert not cache_dir.exists()


def test_the_calendar_asks_the_installed_source() -> None:
    asked: list[tuple[str, str, int]] = []

    def source(country: str, subdiv: str, year: int) -> frozenset[date]:
        asked.append((country, subdiv, year))
        return frozenset({date(year, 3, 3)})

    calendar = BusinessCalendar(country="DE", subdiv="BY")
    use_holiday_source(source)
    try:
        assert calendar.is_holiday(date(2026, 3, 3))
        assert not calendar.is_holiday(date(2026, 1, 6))
        assert asked == [("DE", "BY", 2026)]  # once per year: the calendar keeps it
    finally:
        use_holiday_source(None)
    assert calendar.is_holiday(date(2026, 1, 6))


def test_config_check_of_the_region(cache_dir: Path, tmp_path: Path) -> None:
    assert region_problem("DE", "BY") is None
    cached_holidays("DE", "BY", 2026)
    assert region_problem("DE", "BY") is None  # answered by the cache
    assert region_problem("XX", "")[0] == "holidays_country"  # type: ignore[index]
    assert region_problem("DE", "ZZ")[0] == "holidays_subdiv"  # type: ignore[index]
    config = tmp_path / "bad.toml"
    config.write_text('[sla]\nholidays_country = "DE"\nholidays_subdiv = "ZZ"\n')
    with pytest.raises(ConfigError, match=r"^sla\.holidays_subdiv: "):
        load_settings(config)


def test_importing_one_message_with_a_warm_cache_does_not_import_holidays(
    cache_dir: Path, tmp_path: Path
) -> None:
    eml = tmp_path / "one.eml"
    eml.write_bytes(
        b"From: erika@kunde.example\r\nTo: support@dataandmore.com\r\n"
        b"Subject: Drucker\r\nMessage-ID: <one@kunde.example>\r\n\r\n"
        b"Hallo, unser Drucker druckt nicht mehr. Bitte um Hilfe.\r\n"
    )
    child = (
        "import sys\nfrom mailtriage.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('holidays' in sys.modules, file=sys.stderr)\nsys.exit(code)\n"
    )
    env = os.environ | {
        "MAILTRIAGE_CACHE_DIR": str(cache_dir),
        "MAILTRIAGE_DATABASE_URL": "",
        "MAILTRIAGE_CONFIG": "",
    }
    loaded = []
    for i in range(2):  # the first start fills the cache, the second reads it
        env["MAILTRIAGE_STORAGE_DIR"] = str(tmp_path / f"var-{i}")
        done = subprocess.run(
            [sys.executable, "-c", child, "import", str(eml), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(done.stdout)["created"] == 1
        loaded.append(done.stderr.strip().splitlines()[-1])
    assert loaded == ["True", "False"]
    assert sorted(p.name for p in cache_dir.glob("holidays-*/*.json"))
