"""Impact facts of a support mail, the basis of its priority (GUIDELINES.md, priority).

The guidelines decide priority by impact: how many are blocked, whether a workaround
exists, whether data is being lost, whether a deadline is at risk, whether a flaw is only
cosmetic, whether a wish has a date. Each fact is written from the guidelines' criteria
in general terms (who cannot work, in the same clause; a date ahead, not one gone by),
not from the phrasing of particular mails. :func:`extract_facts`
reads those facts from the customer's folded text (German and English), with negations
("no workaround", "keine Umgehung", "kein Datenverlust", "nicht dringend"), and
:func:`priority_from_facts` decides from them. Words like "dringend" or "ASAP" are
recorded (``pressure``) but never raise the priority on their own.

Pure; the patterns are written for text folded by :func:`..fold.fold` (ä = ae, lower case).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields

from mailtriage.pipeline.regex_prefix import finditer_at

__all__ = ["FACT_NAMES", "ImpactFacts", "extract_facts", "priority_from_facts"]

# A negation cue shortly before a phrase turns it off ("kein Datenverlust", "not blocked").
_NEGATION = re.compile(
    r"\b(?:kein\w*|nicht|nie|ohne|no|not|never|without|none|nothing|isn't|aren't|"
    r"doesn't|don't|didn't|wasn't|hasn't|haven't|n't)\b"
)
_NEG_WINDOW = 30  # characters before the phrase (about four words)
_CLAUSE_END = re.compile(r"[.;:!?\n]|\b(?:aber|but|jedoch|however|sondern)\b")


_WORD_START = r"(?<!\w)"


def _p(*alternatives: str) -> re.Pattern[str]:
    return re.compile(_WORD_START + "(?:" + "|".join(alternatives) + ")")


_MANY = _p(
    r"alle[nr]? (?:\w+ )?(?:mitarbeite\w*|nutzer\w*|benutzer\w*|kolleg\w*|anwender\w*|"
    r"user\w*|standorte?\w*|filiale\w*|abteilung\w*|praxen|clients?)",
    r"(?:das|die) ganze[n]? (?:team|abteilung|firma|haus|buero|praxis|verwaltung)",
    r"gesamte[nr]? (?:team|abteilung|belegschaft|firma|unternehmen|standort)",
    r"niemand (?:kann|mehr|von uns)",
    r"keiner (?:kann|von uns)",
    r"mehrere(?:n)? (?:mitarbeite\w*|nutzer\w*|benutzer\w*|kolleg\w*|abteilung\w*|standort\w*)",
    r"(?:all|most) (?:of )?(?:our |the )?(?:users|staff|employees|colleagues|sites|branches|"
    r"agents|clients|team members)",
    r"every(?:one|body)(?: in)?",
    r"(?:the )?(?:whole|entire) (?:team|department|office|company|organisation|organization|"
    r"site|practice|staff)",
    r"nobody (?:can|is able)",
    r"no one (?:can|is able)",
    r"several (?:users|colleagues|people|teams|departments|sites|staff)",
    r"\d[\d.,]* (?:users|people|staff|employees|colleagues|nutzer\w*|mitarbeite\w*|benutzer\w*|"
    r"kolleg\w*|personen|anwender\w*|arbeitsplaetze\w*|stationen|standorte\w*|filialen|"
    r"niederlassungen|geschaeftsstellen|branches|sites|depots|workstations|pcs|agents|"
    r"active users)",
    r"alle[nr]? (?:rund |ca\.? |etwa |unsere[nr]? )?\d+",
    r"all (?:around |about |of our |our )?\d+",
    r"(?:none|any) of (?:our|the) \w+",
    r"no one (?:at|in|of) ",
    r"niemand (?:mehr|im|in|bei)",
    r"kein(?:em|er|e)? (?:unserer|der) \w+",
    r"(?:von|an|in) allen (?:\w+ )?(?:standorten|filialen|stationen|arbeitsplaetzen|rechnern)",
    r"(?:from|at|in) all (?:\w+ )?(?:sites|branches|depots|offices|locations|pcs|machines)",
    r"(?:whole|entire) \w+ team",
    r"ganze[nr]? (?:haus|verwaltung|standort|niederlassung|station|kanzlei)",
    r"\d[\d.,]* (?:leute\w*|kolleginnen|anwaelt\w*|sachbearbeit\w*|lawyers|advisers|advisors|"
    r"clerks|agents|drivers|fahrer\w*|monteure\w*|researchers|nurses|pflegekraefte|"
    r"schueler\w*|students|stores|filialen|offices|depots)",
    r"(?:team|abteilung|department) (?:of|mit|von) \d+",
    r"(?:zwei|drei|vier|fuenf|sechs|sieben|acht|neun|zehn|elf|zwoelf|two|three|four|five|six|"
    r"seven|eight|nine|ten|eleven|twelve) (?:\w+ )?(?:kolleg\w*|mitarbeite\w*|nutzer\w*|"
    r"benutzer\w*|anwaelt\w*|colleagues|users|people|staff|members|agents|pcs|arbeitsplaetze)",
    r"(?:alle|all) (?:unsere[nr]? |our |the )?(?:abteilungen|departments|teams|bereiche|areas)",
)
_SINGLE = _p(
    r"nur (?:ich|bei mir|mein\w*|ein\w* (?:kolleg\w*|nutzer\w*|benutzer\w*|mitarbeite\w*|rechner))",
    r"(?:only|just) (?:me|my|one (?:user|colleague|person|machine|laptop))",
    r"ein(?:e|em|er)? (?:einzelne[nr]?|kolleg\w*|mitarbeite\w*|nutzer\w*|benutzer\w*) ",
    r"(?:a|one) (?:single )?(?:colleague|user|employee|member of staff) ",
    r"other (?:users|colleagues) (?:are|can|work)",
    r"andere[n]? (?:kolleg\w*|nutzer\w*|benutzer\w*) (?:koennen|sind|arbeiten)",
)
_BLOCKED = _p(
    r"(?:koenne?n|kann) (?:\w+ ){0,3}nicht (?:mehr )?(?:arbeiten|weiterarbeiten|buchen|"
    r"abrechnen|ausliefern|versenden|drucken|abschliessen)",
    r"blockiert",
    r"stillstand",
    r"steh(?:t|en) (?:\w+ )?still",
    r"(?:geht|funktioniert) (?:gar )?nichts mehr",
    r"komplett (?:ausgefallen|down|weg|lahm)",
    r"lahmgelegt",
    r"arbeitsunfaehig",
    r"(?:can ?not|can't|unable to|are unable to) (?:\w+ ){0,2}(?:work|process|ship|invoice|"
    r"bill|book|dispatch|close|continue|do (?:our|any|their) (?:work|job))",
    r"(?:are|is|completely|totally) (?:blocked|stuck|at a standstill)",
    r"(?:brought|ground) to a (?:halt|standstill)",
    r"nothing works",
    r"niemand (?:mehr )?(?:kann|kommt)",
    r"no one (?:\w+ ){0,3}can",
    r"none of (?:\w+ ){1,3}can",
    r"nothing (?:new )?(?:is going|goes|gets) (?:in|through)",
    r"(?:cannot|can't|can not) (?:open|access|upload|save|book) (?:any|anything)",
    r"kein einziges",
    r"(?:hat|haben) (?:\w+ ){0,3}gestoppt",
    r"steh(?:t|en) (?:praktisch |quasi |komplett )?(?:die|der|das|alle)",
    r"working blind",
    r"(?:stopped|halted) (?:all|every)",
    r"(?:cannot|can't) do anything",
)
_DOWN = _p(
    r"(?:produktion|produktivsystem|system|plattform|server|portal|dienst|service) "
    r"(?:\w+ )?(?:steht|ist (?:\w+ )?(?:down|ausgefallen|nicht erreichbar|offline))",
    r"(?:totalausfall|komplettausfall|gesamtausfall)",
    r"(?:production|platform|system|server|portal|service|site) (?:is |went |has gone )?"
    r"(?:completely )?(?:down|offline|unreachable)",
    r"(?:complete|total|full) outage",
    r"outage",
)
_DATA_LOSS = _p(
    r"datenverlust",
    r"daten (?:\w+ ){0,3}(?:verloren|geloescht|weg|ueberschrieben|verschwunden)",
    r"(?:verloren|geloescht|ueberschrieben) (?:\w+ ){0,2}(?:daten|eintraege|datensaetze|dokumente)",
    r"data loss",
    r"(?:data|records|entries|documents|files) (?:\w+ ){0,3}(?:lost|deleted|overwritten|"
    r"disappeared|vanished|wiped|missing)",
    r"(?:losing|lost|deleting|overwriting|wiping) (?:\w+ ){0,2}(?:data|records|entries|documents)",
)
_SECURITY = _p(
    r"sicherheitsvorfall",
    r"security (?:incident|breach|issue)",
    r"phishing",
    r"gehackt",
    r"hacked",
    r"kompromittiert",
    r"compromised",
    r"unbefugte?[nr]? zugriff",
    r"unauthori[sz]ed (?:access|login|logins)",
    r"datenleck",
    r"data (?:breach|leak)",
    r"(?:fremde|andere) (?:kunden)?daten (?:sehen|sichtbar)",
    r"(?:see|seeing|visible) (?:\w+ ){0,2}(?:other|another) (?:customer|client|tenant)",
    r"(?:someone|somebody|a stranger) (?:\w+ )?(?:signed|logged) (?:in|into|on)",
    r"jemand (?:\w+ ){0,4}(?:angemeldet|eingeloggt)",
    r"(?:was|wasn't|was definitely|was not) (?:definitely )?not me",
    r"(?:war|bin) (?:definitiv |sicher )?nicht ich",
    r"(?:from|in|aus) (?:an? )?(?:unknown|unbekannt\w*) "
    r"(?:country|location|device|land|ort|geraet)",
    r"fremde[nr]? (?:anmeldung|login|zugriff)",
    r"(?:aussenstehende|unbefugte|dritte|fremde|outsiders|third parties|strangers|"
    r"unauthori[sz]ed (?:people|persons|users)) (?:\w+ ){0,7}(?:sehen|einsehen|zugreifen|"
    r"oeffnen|herunterladen|see|access|open|view|download)",
    r"(?:oeffentlich|oeffentlichen|publicly|public) (?:\w+ )?(?:zugaenglich|sichtbar|"
    r"einsehbar|accessible|visible|available)",
    r"(?:an|to) (?:den |die |the )?(?:falschen|wrong) "
    r"(?:empfaenger|recipient|person|kunden|customer)",
    r"(?:exposed|leaked|offengelegt|abgeflossen)",
    r"ransomware|malware|trojaner|virus (?:found|gefunden)|verschluesselt worden",
)
_DEADLINE = _p(
    r"frist(?!en)\w*",  # not "fristen": retention periods, a list of deadlines
    r"deadline",
    r"stichtag",
    r"bis (?:spaetestens )?(?:morgen|heute|freitag|montag|dienstag|mittwoch|donnerstag|"
    r"ende der woche|monatsende|\d)",
    r"(?:monats|jahres|quartals)abschluss",
    r"(?:by|before) (?:tomorrow|today|friday|monday|tuesday|wednesday|thursday|"
    r"end of (?:the )?(?:day|week|month)|eod|\d)",
    r"(?:month|year|quarter)[ -]end",
    r"(?:payroll|lohnlauf|gehaltslauf|lohnabrechnung)",
    r"audit (?:is |starts )?(?:tomorrow|next week|on)",
)
_WORKAROUND = _p(
    r"workaround",
    r"umgehung\w*",
    r"behelf\w*",
    r"notloesung",
    r"(?:vorerst|voruebergehend|solange|derweil|in der zwischenzeit) (?:\w+ ){0,4}"
    r"(?:manuell|per hand|von hand|ueber|mit|am|auf)",
    r"manuell (?:\w+ ){0,3}(?:eintragen|erfassen|nacharbeiten|machen|exportieren|umgehen)",
    r"(?:for now|in the meantime|meanwhile|temporarily) (?:we|i|they|users?) (?:\w+ ){0,3}"
    r"(?:use|can|are|do|work|enter|export|switch)",
    r"(?:manually|by hand) (?:\w+ ){0,3}(?:for now|in the meantime|meanwhile)",
    r"(?:we|i|they) can (?:still )?(?:use|work around|get around)",
    r"(?:koennen|kann) (?:\w+ ){0,2}(?:trotzdem|weiterhin|noch) (?:arbeiten|weiterarbeiten|"
    r"nutzen)",
    r"otherwise (?:works|working|usable)",
    r"works (?:fine |ok |okay )?(?:if|when) (?:i|we|you|they)",
    r"funktioniert(?: es)?,? wenn (?:ich|wir|man)",
    r"(?:we're|we are|we can) (?:managing|manage|get by|cope)",
    r"(?:covers|cover|covering|fills in) for",
    r"spring\w* (?:\w+ ){0,3}ein\b",
    r"(?:kommen|behelfen) (?:\w+ ){0,3}(?:zurecht|aus|uns)",
    r"funktioniert (?:aber |ansonsten |sonst )?(?:alles|normal)",
    r"alternativ",
)
_NO_WORKAROUND = _p(
    r"kein(?:e|en)? (?:\w+ )?(?:workaround|umgehung\w*|alternative|ausweichmoeglichkeit|"
    r"notloesung|behelf\w*)",
    r"no (?:\w+ )?(?:workaround|alternative|way around|way to work around|fallback)",
    r"without (?:a |any )?(?:workaround|alternative)",
    r"nicht (?:umgehen|ausweichen)",
    r"(?:cannot|can't) (?:be )?work(?:ed)? around",
    r"kein(?:en)? (?:\w+ )?ausweg",
    r"(?:einen )?ausweg haben wir nicht",
    r"no (?:other )?way (?:to|around|of)",
    r"keine (?:andere )?moeglichkeit",
    r"(?:isn't|is not|not|wasn't) (?:really |very )?(?:realistic|feasible|practical|practicable|"
    r"workable|an option|a real option|a solution)",
    r"(?:nicht|kaum) (?:\w+ )?(?:zu schaffen|machbar|praktikabel|realistisch|zumutbar)",
    r"(?:hours|days|stunden|tage) "
    r"(?:of (?:manual )?work|of extra work|(?:\w+ )?(?:arbeit|aufwand))",
    r"(?:forbidden|not allowed|nicht erlaubt|verboten|untersagt)",
)
# Nobody else can do it: the work depends on the person who is stuck.
_ONLY_ONE = _p(
    r"(?:ich bin|i'm|i am) (?:\w+ ){0,3}(?:die |der )?(?:einzige|only one|only person)",
    r"(?:nobody|no one|niemand|keiner) (?:\w+ ){0,3}(?:else|sonst|anderes?)",
    r"(?:the only one|die einzige|der einzige) (?:\w+ ){0,4}(?:who|die|der)",
)
# A named date or time still ahead ("by Friday", "bis 16 Uhr", "am 28.09.", "on 17 June").
_DAY = (
    r"(?:montag|dienstag|mittwoch|donnerstag|freitag|samstag|sonntag|monday|tuesday|wednesday|"
    r"thursday|friday|saturday|sunday)"
)
_MONTH = (
    r"(?:januar|jaenner|februar|maerz|april|mai|juni|juli|august|september|oktober|november|"
    r"dezember|january|february|march|may|june|july|october|december)"
)
_DATED = _p(
    r"(?:bis|by|until|till|before|vor|on|am|zum|ab|from|at|um|spaetestens|deadline) "
    r"(?:\w+ ){0,2}(?:" + _DAY + r"|morgen|tomorrow|heute|today|tonight|\d{1,2}(?:[.:/]\d{1,2})?"
    r"(?:\.| ?uhr| ?am| ?pm|\b)|(?:the )?(?:end of|ende) (?:the )?(?:day|week|month|woche|monats)|"
    r"" + _MONTH + r")",
    r"(?:heute|today|this) (?:nachmittag|abend|afternoon|evening|morning|noch)",
    r"(?:diese|this|naechste|next) (?:woche|week)",
)
_NOT_URGENT = _p(
    r"nicht (?:\w+ )?(?:dringend|eilig|zeitkritisch)",
    r"kein(?:e|en)? (?:eile|zeitdruck|stress|hektik|dringlichkeit)",
    r"(?:hat|eilt) (?:\w+ )?(?:zeit|nicht)",
    r"wenn (?:sie|ihr|du) (?:\w+ )?(?:zeit|gelegenheit) (?:haben|habt|hast|finden)",
    r"bei gelegenheit",
    r"(?:not|isn't|is not|nothing) (?:\w+ )?(?:urgent|time[ -]critical|pressing)",
    r"no (?:rush|hurry|urgency|time pressure|pressure)",
    r"(?:whenever|when) you (?:have|get) (?:a )?(?:chance|time|moment)",
    r"at your (?:convenience|leisure)",
    r"low priority",
)
_COSMETIC = _p(
    r"kosmetisch\w*",
    r"schoenheitsfehler",
    r"(?:rein )?optisch\w*",
    r"tippfehler",
    r"rechtschreib\w*",
    r"cosmetic\w*",
    r"typo\w*",
    r"spelling",
    r"misaligned",
    r"alignment",
    r"(?:looks|look) (?:odd|off|strange|wrong|weird)",
    r"sieht (?:\w+ )?(?:komisch|seltsam|unschoen|falsch) aus",
    r"(?:nur|rein|purely|only|just) (?:ein )?(?:optisch|visual|aesthetic|a visual|a display)\w*",
    r"(?:looks|look|looking) (?:\w+ ){0,2}(?:unprofessional|not (?:very )?professional|ugly|"
    r"embarrassing|pixelated|blurry)",
    r"(?:sieht|aussieht|aussehen) (?:\w+ ){0,3}(?:peinlich|unprofessionell|nicht schoen|"
    r"haesslich|pixelig|unscharf)",
    r"(?:peinlich|unprofessionell|nicht schoen|unschoen) (?:\w+ )?(?:aus|wirkt)",
)
# Everything still works: the flaw stops nothing (the guidelines' "everything still works").
_WORKS_ANYWAY = _p(
    r"(?:funktioniert|funktionieren|geht|gehen|laeuft|laufen) (?:\w+ ){0,3}(?:ganz |voellig )?"
    r"(?:normal|einwandfrei|problemlos|ohne probleme)",
    r"(?:alles|sonst alles|ansonsten alles) (?:andere )?(?:geht|funktioniert|laeuft)",
    r"(?:works|working|function|functions|button) (?:\w+ ){0,2}(?:normally|fine|as (?:it )?should|"
    r"as expected|perfectly)",
    r"everything (?:else )?(?:still )?(?:works|is working|runs)",
    r"(?:not|isn't|doesn't|does not|nothing) (?:really )?(?:block|blocking|stop|stopping|"
    r"affect|affecting) (?:\w+ )?(?:anything|anyone|us|our work|the work|work)",
    r"(?:blockiert|behindert|stoert) (?:\w+ )?(?:nichts|niemanden|nicht)",
    r"(?:keine|ohne) (?:\w+ )?(?:auswirkung|einschraenkung|beeintraechtigung)\w*",
    r"no (?:real )?(?:impact|effect) on",
)
_WISH = _p(
    r"(?:waere|ist) es (?:schoen|toll|hilfreich|super|praktisch)",
    r"schoen waere",
    r"wunsch",
    r"(?:kuenftige|naechste|zukuenftige) version",
    r"(?:future|next|upcoming) (?:version|release)",
    r"roadmap",
    r"anregung",
    r"verbesserungsvorschlag",
    r"feature[ -]request",
    r"(?:would|it'd) be (?:nice|great|helpful|useful)",
    r"(?:suggestion|idea) for",
    r"(?:could|can) you (?:add|consider adding|build|develop)",
)
# Inability ("we can't file", "koennen ... nicht anlegen") and who is unable: a group
# ("we", "the team", "nobody", "staff") in the same clause makes it a team's work.
_UNABLE = _p(
    r"(?:can ?not|can't|unable to|not able to|no longer able|are not able|aren't able)",
    r"(?:koenne?n|kann|konnten|kommen|komme|kommt) (?:\w+ ){0,6}(?:nicht|nichts|keine\w*)",
    r"(?:nicht|keine?) (?:mehr )?(?:moeglich|arbeiten|weiterarbeiten)",
    r"(?:nobody|no one|niemand|keiner) (?:\w+ ){0,4}(?:can|could|is able|kann|konnte)\b",
)
_GROUP = _p(
    r"we\b",
    r"wir\b",
    r"(?:our|the|unsere?\w*|die|das) (?:\w+ )?(?:team|abteilung|department|buchhaltung|office|"
    r"buero|staff|drivers|fahrer|kolleg\w*|colleagues|mitarbeite\w*|users|nutzer|benutzer)",
    r"(?:nobody|no one|niemand|keiner)\b",
    r"(?:they|staff|colleagues|kolleg\w*|mitarbeite\w*|users|nutzer|benutzer|anwender|people|"
    r"leute)\b",
)
_PRESSURE = _p(r"dringend\w*", r"eilt", r"sofort\w*", r"asap", r"urgent\w*", r"immediately")

# every pattern extract_facts runs over the whole text (all start with _WORD_START)
_FACT_PATTERNS = (
    _MANY, _SINGLE, _BLOCKED, _DOWN, _DATA_LOSS, _SECURITY, _DEADLINE, _WORKAROUND,
    _NO_WORKAROUND, _ONLY_ONE, _DATED, _NOT_URGENT, _COSMETIC, _WORKS_ANYWAY, _WISH,
    _UNABLE, _PRESSURE,
)  # fmt: skip


@dataclass(frozen=True)
class ImpactFacts:
    many_users: bool = False  # all / most / several users, a whole team
    single_user: bool = False  # one person, others work
    blocked: bool = False  # they cannot work / the process stands still
    down: bool = False  # production, system or service down, outage
    data_loss: bool = False  # data being lost, deleted or overwritten (not negated)
    security: bool = False  # security incident, unauthorised access, breach
    deadline: bool = False  # a deadline, period close, payroll run at risk
    workaround: bool = False  # a workaround is named (and not negated)
    no_workaround: bool = False  # "no workaround", "keine Umgehung"
    not_urgent: bool = False  # "nicht dringend", "no rush"
    cosmetic: bool = False  # how it looks, typos
    wish: bool = False  # a wish, a suggestion
    pressure: bool = False  # "dringend", "ASAP" (never decisive on its own)
    team_unable: bool = False  # a group says it cannot do its work ("we can't bill")
    only_one: bool = False  # nobody else can do it ("ich bin die einzige")
    works_anyway: bool = False  # everything (else) still works; it blocks nothing
    dated: bool = False  # a date or time ahead is named ("by Friday", "am 28.09.")

    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name))


FACT_NAMES = tuple(f.name for f in fields(ImpactFacts))


def _negated(text: str, start: int) -> bool:
    """A negation cue in the same clause, within a few words before ``start``."""
    window = text[max(0, start - _NEG_WINDOW) : start]
    ends = list(_CLAUSE_END.finditer(window))
    if ends:
        window = window[ends[-1].end() :]
    return _NEGATION.search(window) is not None


@functools.cache
def _any_fact() -> re.Pattern[str]:
    """Where a match of any fact's pattern starts: one zero-width alternation of them
    all behind one word-start test (built on first use, not at import)."""
    bodies = [pattern.pattern.removeprefix(_WORD_START) for pattern in _FACT_PATTERNS]
    return re.compile(f"{_WORD_START}(?={'|'.join(bodies)})")


def _fact_starts(text: str) -> list[int]:
    """Every position in ``text`` where some fact's pattern matches. A mail has a few;
    finding them in one pass costs about what one pattern's ``finditer`` did (the regex
    engine's cost is mostly the walk over every position), and each pattern then only
    tries those (:func:`finditer_at`: the very matches its ``finditer`` gives)."""
    return [m.start() for m in _any_fact().finditer(text)]


def _found(
    pattern: re.Pattern[str], text: str, starts: Sequence[int], negatable: bool = True
) -> bool:
    return any(
        not negatable or not _negated(text, m.start()) for m in finditer_at(pattern, text, starts)
    )


def _clause(text: str, start: int, end: int) -> str:
    """The clause around ``text[start:end]`` (between sentence or clause ends)."""
    before = list(_CLAUSE_END.finditer(text, max(0, start - 200), start))
    after = _CLAUSE_END.search(text, end, end + 200)
    first = before[-1].end() if before else max(0, start - 200)
    return text[first : after.start() if after else end + 200]


def _together(
    pattern: re.Pattern[str], company: re.Pattern[str], text: str, starts: Sequence[int]
) -> bool:
    """``pattern`` with ``company`` in the same clause."""
    return any(
        company.search(_clause(text, m.start(), m.end()))
        for m in finditer_at(pattern, text, starts)
    )


def extract_facts(text: str) -> ImpactFacts:
    """The impact facts stated in ``text`` (folded: lower case, ä = ae)."""
    starts = _fact_starts(text)
    no_workaround = _found(_NO_WORKAROUND, text, starts, negatable=False)
    not_urgent = _found(_NOT_URGENT, text, starts, negatable=False)
    return ImpactFacts(
        many_users=_found(_MANY, text, starts),
        single_user=_found(_SINGLE, text, starts),
        blocked=_found(_BLOCKED, text, starts),
        down=_found(_DOWN, text, starts),
        data_loss=_found(_DATA_LOSS, text, starts),
        security=_found(_SECURITY, text, starts),
        deadline=_found(_DEADLINE, text, starts),
        workaround=not no_workaround and _found(_WORKAROUND, text, starts),
        no_workaround=no_workaround,
        not_urgent=not_urgent,
        cosmetic=_found(_COSMETIC, text, starts),
        wish=_found(_WISH, text, starts),
        pressure=not not_urgent and _found(_PRESSURE, text, starts),
        team_unable=_together(_UNABLE, _GROUP, text, starts),
        only_one=_found(_ONLY_ONE, text, starts),
        works_anyway=_found(_WORKS_ANYWAY, text, starts, negatable=False),
        dated=_found(_DATED, text, starts),
    )


def priority_from_facts(facts: ImpactFacts, default: str = "normal") -> tuple[str, str]:
    """(priority, why) by the guidelines' impact criteria; ``default`` when no fact
    decides (the category's default)."""
    f = facts
    stopped = f.blocked or f.team_unable
    if f.security:
        return "urgent", "security incident"
    if (f.down or f.data_loss) and not f.workaround:
        return "urgent", "outage or data loss"
    if f.many_users and f.blocked and not f.workaround:
        return "urgent", "many users blocked"
    if f.not_urgent and not stopped:
        return "low", "the sender says it is not urgent"
    if f.cosmetic and not stopped:
        return "low", "cosmetic: everything still works"
    if f.wish and not stopped:
        if f.dated or f.deadline:
            return "normal", "a wish with a date"
        return "low", "a wish without a date"
    impaired = stopped or f.many_users or f.deadline or f.no_workaround or f.only_one
    if impaired and not f.workaround:
        if f.single_user and not (f.deadline or stopped):
            return "normal", "one user affected"
        return "high", "work or deadline impaired, no workaround"
    if f.wish:
        return "low", "a wish"
    if f.workaround:
        return "normal", "a workaround exists"
    return default, "no impact fact"
