"""Commands at the top of an agent's reply (pure).

An agent's reply may start with command lines::

    #status resolved
    #level L2
    #category integration
    #priority high
    #assign Anna Schmidt
    #close

    Dear customer, ...           <- the public reply, relayed to the customer
    #note                        <- from here on: an internal note, never relayed
    Called them, printer is fine.

Rules:

* Command lines are only those at the top: blank lines are skipped, the first other
  line that is not a command line ends the commands. ``#level L2`` further down, or a
  quoted ``> #close`` in the history, is text.
* ``#note`` is the exception: a line that is ``#note`` (or ``#notiz``/``#intern``,
  optionally followed by text) anywhere outside quoted (``>``) lines starts the internal
  note, and everything below it is the note. Relaying a note by mistake is worse than
  keeping a line internal that was meant for the customer.
* Lines are matched NFKC-normalised with invisible characters removed (a full-width
  ``＃note`` or a zero-width space before ``#note`` still starts the note).
* A command line is ``#name value`` or ``#name: value``. Names and values are matched
  folded: case-insensitive, accents removed, ``ß`` = ``ss`` (``#Priorität`` =
  ``#prioritat``); ``ä``/``ö``/``ü`` written ``ae``/``oe``/``ue`` are aliases too.
* Every bad line is an error of its own (unknown command, missing or bad value, a
  value for ``#close``, a command given twice with different values). **If there is
  any error, nothing of that mail is to be applied**; the caller answers the agent with
  a short error mail listing them.

Commands, German aliases and values (values checked against the ``Taxonomy``):

=========  ======================================  =====================================
command    aliases                                 value
=========  ======================================  =====================================
status     zustand                                 new open waiting resolved closed;
                                                   neu offen wartend gelöst erledigt
                                                   geschlossen
level      stufe, ebene                            L1 L2 L3 (also ``l2``, ``2``)
category   kategorie, kat                          a category of the rules; spaces and
                                                   hyphens read as ``_``
priority   prio, priorität, prioritaet             low normal high urgent; niedrig
                                                   normal hoch dringend
assign     zuweisen                                an agent's name or address
close      schließen, schliessen                   none; the same as ``#status closed``
note       notiz, intern                           optional text on the same line
=========  ======================================  =====================================
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "COMMANDS",
    "STATUSES",
    "Command",
    "CommandError",
    "ParsedReply",
    "Taxonomy",
    "fold",
    "parse_agent_reply",
]

STATUSES = ("new", "open", "waiting", "resolved", "closed")

# folded alias -> command
COMMANDS: dict[str, str] = {
    "status": "status",
    "zustand": "status",
    "level": "level",
    "stufe": "level",
    "ebene": "level",
    "category": "category",
    "kategorie": "category",
    "kat": "category",
    "priority": "priority",
    "prio": "priority",
    "prioritat": "priority",
    "prioritaet": "priority",
    "assign": "assign",
    "zuweisen": "assign",
    "close": "close",
    "schliessen": "close",
    "note": "note",
    "notiz": "note",
    "intern": "note",
}

_STATUS_ALIASES = {
    "neu": "new",
    "offen": "open",
    "wartend": "waiting",
    "warten": "waiting",
    "gelost": "resolved",
    "erledigt": "resolved",
    "geschlossen": "closed",
}
_PRIORITY_ALIASES = {"niedrig": "low", "hoch": "high", "dringend": "urgent"}

_COMMAND_LINE = re.compile(r"#([^\W\d_][\w-]*)\s*:?\s*(.*)")
_NOTE_LINE = re.compile(r"#(note|notiz|intern)\b\s*:?\s*(.*)", re.IGNORECASE)


@dataclass(frozen=True)
class Taxonomy:
    """The values commands may set; categories come from the rules in use."""

    categories: tuple[str, ...]
    priorities: tuple[str, ...] = ("low", "normal", "high", "urgent")
    levels: tuple[str, ...] = ("L1", "L2", "L3")
    statuses: tuple[str, ...] = STATUSES
    # (address, name) of each agent, for #assign.
    agents: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Command:
    """One command: canonical name (``status``, ``level``, ...) and canonical value."""

    name: str
    value: str
    line: int  # 1-based line number in the reply


@dataclass(frozen=True)
class CommandError:
    line: int
    text: str  # the line as written
    message: str


@dataclass(frozen=True)
class ParsedReply:
    commands: tuple[Command, ...]
    public_text: str  # what may be relayed: command lines and the note removed
    note: str  # internal, never relayed
    errors: tuple[CommandError, ...]

    @property
    def ok(self) -> bool:
        """True when the mail may be applied (no error at all)."""
        return not self.errors


def fold(text: str) -> str:
    """Case- and accent-insensitive form: ``Priorität`` -> ``prioritat``, ``ß`` -> ``ss``."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.split())


def parse_agent_reply(text: str, taxonomy: Taxonomy) -> ParsedReply:
    """Split an agent's reply into commands, public text and internal note."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    commands: list[Command] = []
    errors: list[CommandError] = []
    public: list[str] = []
    note: list[str] | None = None
    at_top = True
    for number, line in enumerate(lines, start=1):
        if note is not None:
            note.append(line)
            continue
        stripped = _clean(line)
        note_match = _NOTE_LINE.fullmatch(stripped)
        if note_match:
            note = [note_match.group(2)] if note_match.group(2) else []
            at_top = False
            continue
        if at_top and not stripped:
            continue
        match = _COMMAND_LINE.fullmatch(stripped) if at_top else None
        if match is None:
            at_top = False
            public.append(line)
            continue
        result = _command(match.group(1), match.group(2).strip(), number, taxonomy)
        if isinstance(result, str):
            errors.append(CommandError(number, stripped, result))
        else:
            commands.append(result)
    errors.extend(_conflicts(commands, lines))
    return ParsedReply(
        commands=tuple(commands),
        public_text="\n".join(public).strip("\n").rstrip(),
        note="\n".join(note or ()).strip("\n").rstrip(),
        errors=tuple(sorted(errors, key=lambda e: e.line)),
    )


def _clean(line: str) -> str:
    """The line as matched: NFKC (full-width ``＃`` is ``#``), invisible format
    characters (zero-width space, BOM) removed, stripped."""
    normal = unicodedata.normalize("NFKC", line)
    return "".join(ch for ch in normal if unicodedata.category(ch) != "Cf").strip()


def _command(word: str, value: str, line: int, taxonomy: Taxonomy) -> Command | str:
    """The command, or an error message."""
    folded = fold(word)
    name = COMMANDS.get(folded) or COMMANDS.get(_umlaut_alias(folded))
    if name is None:
        known = ", ".join(sorted(set(COMMANDS.values())))
        return f"unknown command #{word} (commands: {known})"
    if name == "close":
        return f"#{word} takes no value" if value else Command("status", "closed", line)
    if not value:
        return f"#{word} needs a value"
    canonical = _value(name, value, taxonomy)
    if canonical is None:
        return f"#{word}: {value!r} is not one of {', '.join(_allowed(name, taxonomy))}"
    return Command(name, canonical, line)


def _umlaut_alias(folded: str) -> str:
    """``prioritaet`` -> ``prioritat``: umlauts written out, folded like the others."""
    return folded.replace("ae", "a").replace("oe", "o").replace("ue", "u")


def _value(name: str, value: str, taxonomy: Taxonomy) -> str | None:
    folded = fold(value)
    if name == "status":
        folded = _STATUS_ALIASES.get(_umlaut_alias(folded), folded)
        return folded if folded in taxonomy.statuses else None
    if name == "priority":
        folded = _PRIORITY_ALIASES.get(folded, folded)
        return folded if folded in taxonomy.priorities else None
    if name == "level":
        by_fold = {fold(level): level for level in taxonomy.levels}
        by_fold |= {fold(level).lstrip("l"): level for level in taxonomy.levels}
        return by_fold.get(folded.replace(" ", ""))
    if name == "category":
        key = re.sub(r"[\s-]+", "_", folded)
        return next((c for c in taxonomy.categories if fold(c) == key), None)
    if name == "assign":
        for address, agent_name in taxonomy.agents:
            if folded in (fold(address), fold(agent_name)):
                return address
        return None
    return None  # pragma: no cover - every command is handled above


def _allowed(name: str, taxonomy: Taxonomy) -> tuple[str, ...]:
    if name == "assign":
        return tuple(agent_name for _, agent_name in taxonomy.agents) or ("(no agents configured)",)
    allowed: dict[str, tuple[str, ...]] = {
        "status": taxonomy.statuses,
        "priority": taxonomy.priorities,
        "level": taxonomy.levels,
        "category": taxonomy.categories,
    }
    return allowed[name]


def _conflicts(commands: list[Command], lines: list[str]) -> list[CommandError]:
    """A command given twice with different values is an error on the later line."""
    first: dict[str, Command] = {}
    errors = []
    for command in commands:
        earlier = first.setdefault(command.name, command)
        if earlier.value != command.value:
            errors.append(
                CommandError(
                    command.line,
                    lines[command.line - 1].strip(),
                    f"#{command.name} {command.value!r} contradicts line {earlier.line} "
                    f"({earlier.value!r})",
                )
            )
    return errors
