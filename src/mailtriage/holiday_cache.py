"""Public holiday dates from a disk cache, so a start need not import ``holidays``.

Importing the ``holidays`` library and computing a year of Bavarian holidays takes a
quarter to half a second, on the path of importing one message. The dates of one
(country, subdivision, year) never change for one version of the library, so the first
start writes them as JSON to ``<cache dir>/holidays-<version>/<country>-<subdiv>-<year>.json``
(the cache directory of the language model, :mod:`mailtriage.cache_dir`) and later starts
read that file. The app installs :func:`cached_holidays` as the source of
:mod:`mailtriage.sla.calendar` (which stays pure: it is handed the lookup). A cache that
cannot be read or written is skipped, never an error.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import tempfile
from datetime import date
from importlib import metadata
from pathlib import Path

from mailtriage.cache_dir import default_cache_dir
from mailtriage.sla.calendar import library_holidays

__all__ = ["cached_holidays", "region_problem"]

log = logging.getLogger(__name__)

_CODE = re.compile(r"[A-Za-z0-9]{1,12}")


@functools.cache
def _version() -> str | None:
    try:
        return metadata.version("holidays")
    except metadata.PackageNotFoundError:
        return None


def _directory() -> Path | None:
    base, version = default_cache_dir(), _version()
    if base is None or version is None:
        return None
    return base / f"holidays-{version}"


def _region(country: str, subdiv: str) -> str | None:
    """The file-name part of a region, None when the codes are not plain codes."""
    if not _CODE.fullmatch(country) or (subdiv and not _CODE.fullmatch(subdiv)):
        return None
    return f"{country}-{subdiv or '_'}"


def _path(country: str, subdiv: str, year: int) -> Path | None:
    directory, region = _directory(), _region(country, subdiv)
    if directory is None or region is None:
        return None
    return directory / f"{region}-{year}.json"


def cached_holidays(country: str, subdiv: str, year: int) -> frozenset[date]:
    """The library's public holidays of the region and year, read from the cache when
    it has them (else computed and written to it)."""
    path = _path(country, subdiv, year)
    if path is not None:
        try:
            days = json.loads(path.read_text(encoding="utf-8"))
            return frozenset(date.fromisoformat(d) for d in days)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as exc:
            log.info("holiday cache %s unusable (%s): rebuilt", path, exc)
    found = library_holidays(country, subdiv, year)
    if path is not None:
        try:
            _write(path, found)
        except OSError as exc:
            log.info("holiday cache %s not written: %s", path, exc)
    return found


def _write(path: Path, days: frozenset[date]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".holidays-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(sorted(d.isoformat() for d in days), out)
        os.replace(tmp, path)  # complete or absent, also with several processes
    except BaseException:
        os.unlink(tmp)
        raise


def region_problem(country: str, subdiv: str) -> tuple[str, str] | None:
    """(key, message) when the library knows no such country or subdivision; a region
    the cache has dates of is known (the library named them)."""
    directory, region = _directory(), _region(country, subdiv)
    if directory is not None and region is not None:
        try:
            if any(directory.glob(f"{region}-*.json")):
                return None
        except OSError:
            pass
    import holidays

    try:
        holidays.country_holidays(country, subdiv=subdiv or None, years=date.today().year)
    except NotImplementedError as exc:
        key = "holidays_subdiv" if "subdivision" in str(exc) else "holidays_country"
        return key, str(exc)
    return None
