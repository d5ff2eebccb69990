"""OCR of screenshots: the text of an error dialog decides a vague mail's classification
and is stored with the attachment; without Tesseract, one log line and no error."""

from __future__ import annotations

import io
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from mailtriage.pipeline.analyse import Analyser, analyse
from mailtriage.runners import ocr
from mailtriage.triage.rules_file import load_rules

from conftest import CLI
from mails import mail, png

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
VAGUE = "Hallo,\n\nbeim Öffnen kommt das hier, siehe Screenshot.\n\nGruß\nErika"


def dialog_png() -> bytes:
    """A Windows-style error dialog, drawn with a real TTF (Tesseract misreads bitmaps)."""

    def font(size: int) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(str(FONT), size)

    img = Image.new("RGB", (640, 220), (240, 240, 240))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, 640, 36], fill=(0, 84, 166))
    draw.text((12, 8), "Windows-Sicherheit", font=font(18), fill="white")
    draw.text((70, 70), "Fehler 0x80070005: Zugriff verweigert", font=font(22), fill="black")
    draw.text(
        (70, 110), "Die Datei konnte nicht geöffnet werden.", font=font(18), fill=(40, 40, 40)
    )
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _tesseract_missing() -> str:
    try:
        import pytesseract  # noqa: F401
    except ImportError:
        return "pytesseract is not installed (pip install -e '.[ocr]')"
    if shutil.which("tesseract") is None:
        return "the tesseract binary is missing (apt install tesseract-ocr tesseract-ocr-deu)"
    if not FONT.is_file():
        return f"{FONT} is missing (apt install fonts-dejavu-core)"
    return ""


@pytest.fixture
def tesseract() -> None:
    """Skip locally without Tesseract; in CI (CI=true) the OCR tests must run."""
    missing = _tesseract_missing()
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"CI must test OCR, but {missing}")
    if missing:
        pytest.skip(missing)


@pytest.fixture(autouse=True)
def fresh_ocr_state() -> Iterator[None]:
    """Each test sees a process that has not yet looked for Tesseract."""
    ocr._state.clear()
    yield
    ocr._state.clear()


def _with_config(config_file: Path, extra: str) -> None:
    config_file.write_text(config_file.read_text() + extra, encoding="utf-8")


@pytest.mark.usefixtures("tesseract")
def test_screenshot_text_decides_the_classification_and_is_stored(
    cli: CLI, tmp_path: Path, config_file: Path
) -> None:
    shot = dialog_png()
    (tmp_path / "m.eml").write_bytes(
        mail(subject="Problem", body=VAGUE, attachments=[("fehler.png", "image/png", shot)])
    )
    assert cli.json("import", str(tmp_path / "m.eml"))["created"] == 1
    ticket = cli.json("tickets", "show", "1")
    assert (ticket["category"], ticket["priority"]) == ("account_access", "normal")
    assert "'zugriff verweigert' (attachment text)" in ticket["classification_reasons"][0]
    [att] = ticket["articles"][0]["attachments"]
    assert att["is_screenshot"]
    assert "Fehler 0x80070005: Zugriff verweigert" in att["ocr_text"]
    assert "geöffnet" in att["ocr_text"]  # deu+eng: umlauts survive

    # reclassify uses the stored OCR text: nothing changes
    code, out, _ = cli("tickets", "reclassify", "1")
    assert code == 0 and "DM-000001 unchanged: L1 account_access normal de" in out

    # the same mail without OCR: the rules see only "siehe Screenshot"
    _with_config(config_file, "[triage]\nocr = false\n")
    (tmp_path / "again.eml").write_bytes(
        mail(subject="Problem 2", body=VAGUE, attachments=[("fehler.png", "image/png", shot)])
    )
    cli.json("import", str(tmp_path / "again.eml"))
    other = cli.json("tickets", "show", "2")
    assert (other["category"], other["priority"]) == ("other", "low")
    assert other["articles"][0]["attachments"][0]["ocr_text"] is None


@pytest.mark.usefixtures("tesseract")
def test_only_screenshots_are_read_once_each() -> None:
    shot = dialog_png()
    raw = mail(
        body="siehe Anhang",
        attachments=[
            ("a.png", "image/png", shot),
            ("b.png", "image/png", shot),  # the same picture twice: read once
            ("logo.png", "image/png", png(40, 40)),  # too small to be a screenshot
        ],
    )
    analyser = Analyser(rules=load_rules(), ocr=partial(ocr.ocr_screenshots, languages="deu+eng"))
    result = analyse(raw, analyser)
    [(sha, text)] = result.ocr_text
    assert "0x80070005" in text
    assert sha in {a.sha256 for a in result.parsed.attachments if a.filename == "a.png"}
    assert result.classification is not None and result.classification.category == "account_access"
    # unknown languages are left out; none left = OCR off
    assert ocr.available_languages("deu+xxx") == "deu"
    assert ocr.available_languages("xxx") is None


def _shot_mail() -> bytes:
    return mail(subject="Problem", body=VAGUE, attachments=[("s.png", "image/png", png(400, 300))])


@pytest.mark.parametrize("broken", ["no pytesseract", "no tesseract binary"])
def test_without_tesseract_one_log_line_and_no_error(
    broken: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if broken == "no pytesseract":
        monkeypatch.setitem(sys.modules, "pytesseract", None)
    else:
        pytesseract = pytest.importorskip("pytesseract")
        monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    analyser = Analyser(rules=load_rules(), ocr=partial(ocr.ocr_screenshots, languages="deu+eng"))
    with caplog.at_level(logging.WARNING, logger="mailtriage.runners.ocr"):
        for _ in range(3):
            result = analyse(_shot_mail(), analyser)
            assert result.ocr_text == ()
            assert result.classification is not None
            assert result.classification.category == "other"
    [record] = caplog.records
    assert record.getMessage().startswith("OCR off: ")
    assert ("pytesseract" if broken == "no pytesseract" else "Tesseract") in record.getMessage()


@pytest.mark.usefixtures("tesseract")
def test_an_unreadable_image_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mailtriage.runners.ocr"):
        assert ocr.ocr_image(b"\x89PNG\r\n\x1a\nbroken", "deu+eng") == ""
    assert "OCR of one image skipped" in caplog.text
