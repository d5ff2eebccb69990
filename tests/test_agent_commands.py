"""Agent email commands: what counts as a command, what is relayed, what stays internal."""

from __future__ import annotations

import time

import pytest

from mailtriage.pipeline.agent_commands import Command, Taxonomy, fold, parse_agent_reply

TAX = Taxonomy(
    categories=("integration", "how_to", "severe_error"),
    agents=(("anna@dataandmore.com", "Anna Schmidt"), ("bo@dataandmore.com", "Bo")),
)


def commands(text: str) -> list[tuple[str, str]]:
    parsed = parse_agent_reply(text, TAX)
    assert parsed.errors == (), parsed.errors
    return [(c.name, c.value) for c in parsed.commands]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("#status resolved", ("status", "resolved")),
        ("#status open", ("status", "open")),
        ("#status waiting", ("status", "waiting")),
        ("#level L2", ("level", "L2")),
        ("#level l3", ("level", "L3")),
        ("#level 1", ("level", "L1")),
        ("#category integration", ("category", "integration")),
        ("#category how to", ("category", "how_to")),
        ("#category Severe-Error", ("category", "severe_error")),
        ("#priority high", ("priority", "high")),
        ("#priority URGENT", ("priority", "urgent")),
        ("#assign Anna Schmidt", ("assign", "anna@dataandmore.com")),
        ("#assign anna  schmidt", ("assign", "anna@dataandmore.com")),
        ("#assign BO@dataandmore.com", ("assign", "bo@dataandmore.com")),
        ("#close", ("status", "closed")),
        # Case, colon, spacing
        ("#STATUS Resolved", ("status", "resolved")),
        ("#Status: resolved", ("status", "resolved")),
        ("  #level   L2  ", ("level", "L2")),
        ("#Close", ("status", "closed")),
        # German aliases, umlauts and their spellings
        ("#stufe L2", ("level", "L2")),
        ("#Ebene 3", ("level", "L3")),
        ("#kategorie integration", ("category", "integration")),
        ("#Priorität hoch", ("priority", "high")),
        ("#PRIORITÄT Dringend", ("priority", "urgent")),
        ("#prioritaet niedrig", ("priority", "low")),
        ("#prio normal", ("priority", "normal")),
        ("#zuweisen Bo", ("assign", "bo@dataandmore.com")),
        ("#schließen", ("status", "closed")),
        ("#SCHLIESSEN", ("status", "closed")),
        ("#status gelöst", ("status", "resolved")),
        ("#status geloest", ("status", "resolved")),
        ("#status erledigt", ("status", "resolved")),
        ("#zustand offen", ("status", "open")),
        ("#status wartend", ("status", "waiting")),
        ("#status geschlossen", ("status", "closed")),
        ("#status neu", ("status", "new")),
    ],
)
def test_every_command(line, expected):
    parsed = parse_agent_reply(f"{line}\n\nHallo Frau Muster,\nes geht wieder.\n", TAX)
    assert parsed.errors == ()
    assert [(c.name, c.value) for c in parsed.commands] == [expected]
    assert parsed.public_text == "Hallo Frau Muster,\nes geht wieder."
    assert parsed.note == ""
    assert parsed.ok


def test_several_commands_and_blank_lines_between():
    text = "\n#level L2\n\n#category integration\n#priority high\n\nDear customer,\nfixed.\n"
    parsed = parse_agent_reply(text, TAX)
    assert [(c.name, c.value, c.line) for c in parsed.commands] == [
        ("level", "L2", 2),
        ("category", "integration", 4),
        ("priority", "high", 5),
    ]
    assert parsed.public_text == "Dear customer,\nfixed."


def test_commands_after_text_are_text():
    text = "Dear customer,\n#close\n#level L3\nregards"
    parsed = parse_agent_reply(text, TAX)
    assert parsed.commands == ()
    assert parsed.errors == ()
    assert parsed.public_text == text


def test_quoted_command_in_history_is_not_a_command():
    text = "Thanks!\n\nOn Mon, Anna wrote:\n> #close\n> #note\n> secret\n"
    parsed = parse_agent_reply(text, TAX)
    assert parsed.commands == ()
    assert parsed.note == ""
    assert "> secret" in parsed.public_text


def test_quoted_command_at_the_top_is_not_a_command_and_ends_the_block():
    parsed = parse_agent_reply("> #close\n#level L2\n", TAX)
    assert parsed.commands == ()
    assert parsed.public_text == "> #close\n#level L2"


def test_note_at_the_top_keeps_everything_internal():
    parsed = parse_agent_reply("#status waiting\n#note\nCalled them.\nPrinter is fine.", TAX)
    assert commands("#status waiting\n#note\nx") == [("status", "waiting")]
    assert parsed.public_text == ""
    assert parsed.note == "Called them.\nPrinter is fine."


def test_note_in_the_middle_splits_public_and_internal():
    text = "#close\n\nDear customer,\nall done.\n\n#Notiz: Kunde war unfreundlich\nmehr intern\n"
    parsed = parse_agent_reply(text, TAX)
    assert [(c.name, c.value) for c in parsed.commands] == [("status", "closed")]
    assert parsed.public_text == "Dear customer,\nall done."
    assert parsed.note == "Kunde war unfreundlich\nmehr intern"
    # Nothing of the note reaches the public text, whatever it contains.
    assert "unfreundlich" not in parsed.public_text


def test_commands_inside_the_note_are_note_text():
    parsed = parse_agent_reply("#note\n#close\n#level L9", TAX)
    assert parsed.commands == ()
    assert parsed.errors == ()
    assert parsed.note == "#close\n#level L9"


@pytest.mark.parametrize("word", ["#notebook is slow", "#notes", "# note", "#1 priority"])
def test_words_that_only_look_like_note_are_text(word):
    parsed = parse_agent_reply(f"Hello,\n{word}\nbye", TAX)
    assert parsed.note == ""
    assert word in parsed.public_text


def test_empty_reply():
    for text in ("", "\n\n", "   "):
        parsed = parse_agent_reply(text, TAX)
        assert parsed.commands == ()
        assert parsed.errors == ()
        assert parsed.public_text == ""
        assert parsed.note == ""


def test_only_commands():
    parsed = parse_agent_reply("#close\r\n", TAX)
    assert parsed.commands == (Command("status", "closed", 1),)
    assert parsed.public_text == ""


@pytest.mark.parametrize(
    ("text", "messages"),
    [
        ("#frobnicate now\nHi", ["unknown command #frobnicate"]),
        ("#hashtag\nHi", ["unknown command #hashtag"]),
        ("#status done", ["#status: 'done' is not one of new, open, waiting, resolved, closed"]),
        ("#status", ["#status needs a value"]),
        ("#status resolved thanks", ["'resolved thanks' is not one of"]),
        ("#level L4", ["#level: 'L4' is not one of L1, L2, L3"]),
        ("#level 0", ["#level: '0' is not one of"]),
        ("#stufe", ["#stufe needs a value"]),
        ("#category printing", ["#category: 'printing' is not one of"]),
        ("#priority highest", ["#priority: 'highest' is not one of low, normal, high, urgent"]),
        ("#priorität sehr hoch", ["#priorität: 'sehr hoch' is not one of"]),
        ("#assign Mallory", ["#assign: 'Mallory' is not one of Anna Schmidt, Bo"]),
        ("#assign anna@dataandmore.com.evil.example", ["#assign: "]),
        ("#close now", ["#close takes no value"]),
        ("#status new\n#close", ["#status 'closed' contradicts line 1 ('new')"]),
        (
            "#level L5\n#bogus\n#priority high\nText",
            ["#level: 'L5' is not one of", "unknown command #bogus"],
        ),
    ],
)
def test_errors_one_per_bad_line(text, messages):
    parsed = parse_agent_reply(text, TAX)
    assert not parsed.ok
    assert len(parsed.errors) == len(messages)
    for error, message in zip(parsed.errors, messages, strict=True):
        assert message in error.message
        assert error.text == text.split("\n")[error.line - 1].strip()


def test_a_good_command_next_to_a_bad_one_is_still_returned_but_not_ok():
    # The caller applies nothing when there is any error; the parse still shows all.
    parsed = parse_agent_reply("#level L2\n#bogus\n", TAX)
    assert [c.name for c in parsed.commands] == ["level"]
    assert not parsed.ok


def test_same_command_twice_with_same_value_is_fine():
    assert commands("#close\n#status closed") == [("status", "closed"), ("status", "closed")]


def test_assign_without_agents_configured():
    parsed = parse_agent_reply("#assign anna", Taxonomy(categories=("x",)))
    assert parsed.errors[0].message == "#assign: 'anna' is not one of (no agents configured)"


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Priorität", "prioritat"),
        ("SCHLIEẞEN", "schliessen"),
        ("Gelöst", "gelost"),
        ("a  b", "a b"),
    ],
)
def test_fold(text, folded):
    assert fold(text) == folded


@pytest.mark.parametrize(
    "text",
    ["#" + "a" * 200_000, "#status " + " " * 200_000 + "x", "#level L2\n" * 5_000, "\n" * 200_000],
)
def test_hostile_long_replies_are_fast(text):
    started = time.monotonic()
    parse_agent_reply(text, TAX)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("text", "expected", "note"),
    [
        ("＃close\nHi", [("status", "closed")], ""),  # full-width number sign
        ("\u200b#close\nHi", [("status", "closed")], ""),  # zero-width space
        ("\ufeff#level L2\nHi", [("level", "L2")], ""),  # BOM
        ("Hi\n＃note\nsecret", [], "secret"),
        ("Hi\n\u200b#note\nsecret", [], "secret"),
        ("Hi\n\u00a0#note\u00a0secret", [], "secret"),  # no-break spaces
    ],
)
def test_invisible_and_full_width_characters(text, expected, note):
    parsed = parse_agent_reply(text, TAX)
    assert [(c.name, c.value) for c in parsed.commands] == expected
    assert parsed.note == note
    assert "secret" not in parsed.public_text
