"""Mail-loop guard: decide whether an inbound message was written by a human.

The ingest pipeline turns human mail into tickets.  Everything automated (bounces and
delivery-status notifications, out-of-office and other auto-replies, read receipts,
mailing-list traffic, our own mail coming back) is stored, marked ignored with the reasons
given here and never answered, so that two robots cannot mail each other forever.

:func:`detect_loop` is a pure function of the parsed message.  It looks only at the
message's own top level: its headers, its MIME tree down to (not into) attached
``message/*`` parts, and its inline text parts.  A bounce or an auto-reply that a person
forwards, as an attachment or inline, therefore stays a human message.

Order of the checks (the first that matches decides):

1. our own marker header (``X-Mailtriage-*``) -> ``own``;
2. machine-readable reports: RFC 3464 delivery status (``bounce``), RFC 5965 ARF feedback
   (``bounce``), RFC 8098 disposition notifications (``auto_reply``; a Sieve reject is a
   ``bounce``), Exchange reports sent as TNEF (by MAPI message class);
3. a Message-ID in one of ``own_domains`` -> ``own``;
4. bounces without a report part: ``X-Failed-Recipients``, mailer-daemon senders, a null
   return path or a postmaster-like sender together with bounce wording, a bounce subject
   confirmed by an MTA template or a returned message, a body that opens with an MTA
   template, list managers rejecting a post, bulk-mail services' JSON notifications;
5. explicit auto-reply headers (``Auto-Submitted`` other than ``no``, ``X-Autoreply`` and
   friends, ``Precedence: auto_reply``, vendors' vacation headers) -> ``out_of_office``
   or ``auto_reply`` (but ``Auto-Submitted: auto-generated`` on list mail is ``list``);
6. mailing-list headers -> ``list``;
7. weaker evidence, only in combination: ``Auto-Submitted: no`` cancels all of it.  A null
   return path; an auto-responder's subject ("Automatic reply:", "AUTO: ... is out of
   the office") backed by a header or by auto-reply wording; helpdesk acknowledgements
   backed by a header; challenge/response notices; ``Precedence: bulk/junk``;
8. otherwise ``human``.

Subject heuristics never fire when the subject starts with a reply or forward prefix
(``Re:``, ``AW:``, ``Fwd:``, ``WG:``...), body heuristics never on forwards, never on quoted
text and never on their own; and a subject that asks for help or a body that greets and
asks a question vetoes the phrase-only rules.
"""

from __future__ import annotations

import base64
import codecs
import html
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header
from email.message import Message
from email.utils import parseaddr
from functools import cached_property
from typing import Literal

from mailtriage.pipeline.parse import decode_8bit_header

__all__ = ["LoopKind", "LoopVerdict", "detect_loop"]

LoopKind = Literal["human", "auto_reply", "out_of_office", "bounce", "list", "own"]


@dataclass(frozen=True)
class LoopVerdict:
    """What :func:`detect_loop` decided, and why."""

    kind: LoopKind
    #: short names of the signals that decided, e.g. ``"header:Auto-Submitted=auto-replied"``
    reasons: tuple[str, ...]
    #: RFC 3464 ``Status`` of the first failed recipient, e.g. ``"5.1.1"``
    bounce_status: str | None = None
    #: for bounces: True for 5.x.x, False for 4.x.x (delay), None when unknown
    permanent: bool | None = None
    failed_recipients: tuple[str, ...] = ()
    #: Message-ID (without ``<>``) of the mail that bounced or was auto-answered
    original_message_id: str | None = None

    @property
    def automated(self) -> bool:
        return self.kind != "human"


# --------------------------------------------------------------------------- limits

_MAX_PARTS = 200  # MIME parts looked at
_MAX_DEPTH = 16  # multipart nesting followed
_MAX_PART_BYTES = 200_000  # bytes decoded per text part
_MAX_TEXT = 60_000  # characters of inline body text kept
_TOP_OF_BODY = 400  # characters that count as "the body opens with"
_HEAD_OF_BODY = 3_000  # characters searched for auto-reply wording
_TNEF_HEAD = 16_384  # bytes of a winmail.dat read for its message class
_MAX_HEADER = 4_000  # characters of Subject and From looked at

_OWN_MARKER_PREFIX = "x-mailtriage"

# --------------------------------------------------------------------------- patterns
# Text patterns match "folded" text: NFKD with combining marks removed, casefolded
# ("ß" -> "ss", "Ü" -> "u"), runs of whitespace collapsed to one space.

# Reply and forward prefixes of many clients and languages, optionally numbered
# ("Re[2]:", "AW(3):", "Re^2:").  "W." is Lotus Notes' German forward prefix.
_FORWARD_WORDS = (
    r"fw|fwd|fwdd|wg|tr|enc|fs|vl|doorst|pd|i|trs|tov|wtrd|w\.|weitergeleitet|forward|"
    r"forwarded"
)
_REPLY_WORDS = r"re|aw|antw|antwort|sv|vs|odp|rif|r|ris|res|rv|ynt|va|atb|ats|odg|otv|ilt"
_PREFIX_TAIL = r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:：]"
_REPLY_FWD_PREFIX = re.compile(rf"^(?:{_REPLY_WORDS}|{_FORWARD_WORDS}){_PREFIX_TAIL}")
_FORWARD_PREFIX = re.compile(rf"^(?:{_FORWARD_WORDS}){_PREFIX_TAIL}")
_LEADING_TAG = re.compile(r"^\s*\[[^\]]{0,80}\]\s*")

_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|returned to sender|returning message to sender|"
    r"return(?:ed|ing) (?:message|mail) to sender|delivery status notification|"
    r"delivery (?:status|failure|failed|notification|problem|report|error|warning|"
    r"has failed|incomplete)|mail delivery (?:failed|failure|problem|error|system|status|"
    r"subsystem|warning)|message delivery (?:failure|has failed|failed)|"
    r"failure notice|failure delivery|failed delivery|failed mail|"
    r"non[- ]?deliver|could ?n[o']t be delivered|can ?n[o']t be delivered|"
    r"not delivered|unable to deliver|"
    r"mail system error|delayed mail|message delayed|mail delayed|delivery delayed|"
    r"could not send message for past|cannot send message for|has not yet been delivered|"
    r"rejected mail|automatically rejected|permanent error|permanent delivery|"
    r"unzustellbar|nicht zustellbar|zustellung fehlgeschlagen|"
    r"ubermittlungsstatus|rucklaufer|nicht zugestellt|"
    r"non remis|non distribuable|echec de (?:la )?(?:remise|distribution)|"
    r"rapport de non-remise|notification d'etat de remise|"
    r"no se (?:puede|pudo) entregar|no entregado|notificacion de estado de entrega|"
    r"mancato recapito|non recapitabile|impossibile recapitare|"
    r"onbestelbaar|niet bezorgd|niet afgeleverd|niedostarcz|nie mozna dostarczyc|"
    r"nao entregue|nao foi possivel entregar|не доставлен|недоставлен|"
    r"配信不能|配信エラー|メールエラー|エラー通知|送信エラー|退信|无法投递|未送达"
)
# The message is still being retried.
_DELAY_TEXT = re.compile(
    r"\(delay\)|delayed|delay notification|still being retried|will (?:continue|keep) "
    r"(?:trying|to try|retrying)|will be retried|will retry|will try again|"
    r"has not yet been delivered|not yet been delivered|could not send message for past|"
    r"cannot send message for|warning: message|delivery warning|mail delivery warning|"
    r"transient (?:failure|error)|temporary (?:failure|error)|zustellung verzogert|"
    r"noch nicht zugestellt|verzogert"
)
# Boilerplate that MTAs and gateways write into their bounces.
_BOUNCE_TEMPLATE = re.compile(
    r"this is the mail system at host|"
    r"i'm sorry to have to inform you that your message could not|"
    r"this message was created automatically by mail delivery software|"
    r"a message that you sent could not be delivered|"
    r"this is the qmail-send program|"
    r"i'm afraid i wasn't able to deliver|"
    r"below this line is a copy of the message|"
    r"the following addresses had permanent fatal errors|"
    r"transcript of session follows|"
    r"the original message was received at|"
    r"delivery to the following recipients? (?:failed|was aborted|has been delayed)|"
    r"your message did not reach some or all of the intended recipients|"
    r"did not reach the following recipient|"
    r"the following recipient\(?s\)? could not be reached|"
    r"delivery has failed to these recipients|"
    r"we had trouble delivering your message|"
    r"this is an automatically generated delivery status notification|"
    r"could ?n[o']t deliver (?:the |your )?message to the following|"
    r"(?:message|mail|e-?mail)(?: that you sent)?(?: to [^ ]{1,120})? (?:could|can) ?n[o']t "
    r"be delivered|"
    r"could ?n[o']t be delivered to (?:one or more|the following|all)|"
    r"delivery of (?:e-?mail|your (?:message|e-?mail)|the message) .{0,120}?"
    r"(?:has been postponed|has failed|failed|has been delayed)|"
    r"will continue to try to deliver|"
    r"(?:nachricht|e-?mail) konnte nicht (?:an .{1,80} )?zugestellt werden|"
    r"n'a pas pu (?:etre )?(?:remis|delivre)|"
    r"no se (?:pudo|puede) entregar|non e stato possibile recapitare|"
    r"kon niet worden (?:bezorgd|afgeleverd)|"
    r"не (?:может быть )?доставлен|не удалось доставить|"
    r"送信できませんでした|配信できませんでした|届きませんでした|无法投递|未能送达"
)
# Failure wording that is not specific to an MTA template.
_BOUNCE_WORDS = re.compile(
    r"undeliverable|undelivered|was not delivered|wasn't delivered|"
    r"unable to deliver|failed to deliver|could not deliver|couldn't deliver|"
    r"cannot be delivered|delivery (?:has )?failed|delivery failure|"
    r"permanent (?:fatal )?errors?|permanent failure|returned (?:mail|message)|"
    r"non-?delivery|nondeliverable|recipient name is not recognized|"
    r"user unknown|unknown user|no such user|unknown recipient|"
    r"invalid (?:user|recipient|mailbox|address)|not a valid (?:user|recipient|mailbox|address)|"
    r"recipient address rejected|mailbox (?:unavailable|is full|full|not found)|full mailbox|"
    r"over quota|quota exceeded|host or domain name not found|"
    r"not listed in (?:domino|the) directory|error transferring to|"
    r"unzustellbar|nicht zugestellt|zustellung (?:ist )?fehlgeschlagen|non remis|宛先不明"
)
# Sentences an MTA opens a bounce with; only checked at the very top of the body.
_BOUNCE_OPENING = re.compile(
    r"^\W*(?:this is the mail system at host|"
    r"i'm sorry to have to inform you|"
    r"this message was created automatically by mail delivery software|"
    r"hi\. this is the qmail-send program|"
    r"i'm afraid i wasn't able to deliver|"
    r"(?:your |the (?:following )?)?(?:message|mail|e-?mail)(?: that you sent)?"
    r"(?: to .{1,120}?)? (?:could|can) ?n[o']t be delivered|"
    r"delivery to the following recipients? (?:failed|has been delayed)|"
    r"your message did not reach some or all|"
    r"delivery has failed to these recipients|"
    r"we had trouble delivering your message|"
    r"could ?n[o']t deliver (?:the |your )?message to the following|"
    r"votre message n'a pas pu etre (?:remis|delivre)|"
    r"(?:ihre|die) nachricht konnte nicht zugestellt werden)"
)
_DSN_TEXT_FIELD = re.compile(r"^(?:final-recipient|original-recipient)\s*:", re.I | re.M)

# Subject "heads" (before the first ':' or inside a leading [tag]) of auto-responders.
_AUTO_SUBJECT_STRONG = re.compile(
    r"automatic reply|automatic response|automated reply|automated response|"
    r"auto[- ]?repl(?:y|ied)|auto[- ]?respon(?:se|der|s)|auto[- ]?antwort|"
    r"automatische (?:antwort|ruckantwort|nachricht)|abwesenheitsnotiz|"
    r"abwesenheitsnachricht|abwesenheitsmeldung|abwesenheitsinfo|out of (?:the )?office|"
    r"out-of-office|reponse automatique|message d'absence|absent du bureau|"
    r"risposta automatica|fuori (?:sede|ufficio)|respuesta automatica|fuera de la oficina|"
    r"resposta automatica|automatisch antwoord|afwezigheidsbericht|automatyczna odpowiedz|"
    r"odpowiedz automatyczna|autosvar|automatiskt svar|automatisk svar|"
    r"automaattinen vastaus|automaticka odpoved|automatikus valasz|otomatik yanit|"
    r"automatiska atbilde|automatine atsakymas|arpus biroja|"
    r"автоматический ответ|автоответ|自动回复|自動回覆|自動応答|自動返信"
)
_AUTO_SUBJECT_WEAK = re.compile(
    r"^(?:auto|abwesend|abwesenheit|urlaub|im urlaub|ferien|vacation|on vacation|away|"
    r"absence|absent|on leave|holiday|afwezig|atvalinajums|nieobecnosc|ausente|assente|"
    r"poissa|fravaer|franvaro|ooo|oof|不在)\b"
)
_AUTO_SUBJECT_SUFFIX = re.compile(
    r"\((?:automatic response|automatic reply|auto[- ]?reply|auto[- ]?response|"
    r"out of (?:the )?office|abwesenheitsnotiz|automatische antwort|vacation)\)\s*$"
)
_EXCHANGE_OOF_HEAD = re.compile(
    r"automatic reply|automatische antwort|abwesenheitsnotiz|out of (?:the )?office|"
    r"reponse automatique|risposta automatica|respuesta automatica|automatisch antwoord|"
    r"automatyczna odpowiedz|arpus biroja"
)
_OOO_WORDS = re.compile(
    r"out of (?:the )?office|out-of-office|\booo\b|\boof\b|vacation|holiday|on leave|"
    r"away from|abwesen|urlaub|ausser haus|nicht im (?:buro|haus)|absence|absent|"
    r"fuori (?:sede|ufficio)|fuera de la oficina|afwezig|atvalinajums|arpus biroja|"
    r"nieobecn|ausente|poissa|不在"
)
# First-person out-of-office statements.
_OOO_BODY = re.compile(
    r"\bi(?: am|'m| will be|'ll be| shall be) (?:currently |now |presently )?"
    r"(?:out of (?:the )?office|away|on (?:vacation|holiday|leave|annual leave|"
    r"parental leave|maternity leave|sick leave|business travel)|not in the office|"
    r"out of town|travell?ing|absent|off work)|"
    r"\bout of (?:the )?office (?:until|till|from|through|and will|returning)|"
    r"\bi (?:will|shall) (?:be back|return)|\bback in the office|"
    r"limited access to (?:my )?e-?mail|\bwhile i(?: am|'m) (?:away|out)|upon my return|"
    r"\bich bin (?:vom|von|bis|ab|am|derzeit|zurzeit|zur zeit|momentan|aktuell|leider|"
    r"nicht|ausser|im|in|wieder)\b.{0,80}?(?:nicht im (?:buro|haus|hause)|ausser haus|"
    r"abwesend|im urlaub|urlaub|nicht erreichbar|wieder (?:im buro|erreichbar|da))|"
    r"\b(?:nicht im (?:buro|hause)|ausser haus|abwesend|im urlaub)\b.{0,60}?"
    r"(?:zuruck|wieder|erreichbar)|"
    r"\bje suis (?:absent|en conge|en vacances)|\bsono (?:fuori|assente|in ferie)|"
    r"\bestoy (?:fuera|de vacaciones|ausente)|\bik ben (?:afwezig|met vakantie)|"
    r"\bjestem (?:nieobecn|na urlopie)"
)
# Statements that the message was generated automatically.
_AUTO_BODY = re.compile(
    r"this is an? automat(?:ed|ic|ically generated) (?:reply|response|message|answer|"
    r"notification|acknowledge?ment|e-?mail)|"
    r"(?:automated|automatic) (?:reply|response) to your (?:message|e-?mail)|"
    r"this message has been automatically generated|"
    r"this (?:e-?mail|message) (?:was|has been) (?:sent|generated) automatically|"
    r"dies ist eine automatische (?:antwort|nachricht|benachrichtigung|e-?mail)|"
    r"diese (?:e-?mail|nachricht) wurde automatisch (?:erstellt|generiert|versendet|"
    r"verschickt)|automatisch (?:generierte|erstellte) (?:nachricht|e-?mail|antwort)|"
    r"ceci est une reponse automatique|questa e una risposta automatica|"
    r"esta es una respuesta automatica|dit is een automatisch"
)
# Other helpdesks' acknowledgements ("we received your request").
_ACK_SUBJECT = re.compile(
    r"(?:your|ihre) (?:request|message|e-?mail|ticket|case|anfrage|nachricht|meldung)"
    r".{0,40}(?:has been|was|is|ist|wurde) (?:received|created|opened|logged|registered|"
    r"eingegangen|erhalten|empfangen|erfasst|registriert|angelegt|eroffnet)|"
    r"we (?:have )?received your|wir haben ihre .{0,30}(?:erhalten|empfangen)|"
    r"(?:request|ticket|case) (?:received|created|opened|logged)|"
    r"eingangsbestatigung|empfangsbestatigung|auto[- ]?acknowledge?ment|"
    r"acknowledge?ment of (?:receipt|your)|thank you for contacting|"
    r"thank(?:s| you) for your (?:e-?mail|message|request|inquiry|enquiry)|"
    r"(?:vielen )?dank fur ihre (?:e-?mail|nachricht|anfrage)"
)
_ACK_BODY = re.compile(
    r"(?:your|ihre) (?:request|message|e-?mail|ticket|case|anfrage|nachricht|meldung)"
    r".{0,60}(?:has been|was|is|ist|wurde) (?:received|created|opened|logged|registered|"
    r"eingegangen|erhalten|empfangen|erfasst|registriert|angelegt)|"
    r"we (?:have )?received your (?:request|message|e-?mail|inquiry|enquiry)|"
    r"wir haben ihre (?:anfrage|nachricht|e-?mail) (?:erhalten|empfangen)|"
    r"(?:a|your) (?:ticket|request|case) (?:has been|was) (?:created|opened|logged)"
)
# Challenge/response systems ("click the link to get on my allowed list").
_CHALLENGE_BODY = re.compile(
    r"(?:allowed|approved|white|safe|accepted)[ -]?(?:list|senders)|whitelist|"
    r"verify (?:that )?you are (?:a human|a real person|not a)|"
    r"(?:account|mailbox|address|inbox) is protected by|sender verification|"
    r"challenge[ /-]response|awaiting (?:your )?(?:verification|confirmation)"
)
_CHALLENGE_ACTION = re.compile(
    r"(?:click|visit|follow|open)(?: on)? (?:the|this)(?: following)? link|"
    r"(?:reply|respond) to this (?:message|e-?mail) to (?:verify|confirm)"
)
_RECEIVED_OPENING = re.compile(
    r"^\W*your (?:message|e-?mail)(?: to .{1,120}?)? (?:was|has been) "
    r"(?:received|held|quarantined|blocked)"
)

# What a person asking for help writes; vetoes the phrase-only rules.
_HELP_SUBJECT = re.compile(
    r"\?|\bhow (?:do|can|to|should|does)\b|\bwie (?:kann|konnen|richte|stelle|aktiviere|"
    r"funktioniert|geht|lasst)\b|funktioniert nicht|geht nicht|klappt nicht|"
    r"does ?n[o']t work|do ?n[o']t work|not working|\bproblem|\bfehler|\bfrage\b|"
    r"\bquestion\b|\bhilfe\b|\bhelp\b|\bissue\b|\bbitte\b|\bplease\b|\berror\b"
)
_HELP_BODY = re.compile(
    r"\bhow (?:do|can|should) (?:i|we)\b|\bwie (?:kann|konnen|richte|stelle) (?:ich|wir)\b|"
    r"funktioniert (?:leider )?nicht|geht (?:leider )?nicht|klappt (?:leider )?nicht|"
    r"does ?n[o']t work|do ?n[o']t work|not working|\bcan you\b|\bcould you\b|"
    r"\bkonnen sie\b|\bkonnten sie\b|\bkannst du\b|please help|bitte helfen"
)
_PERSONAL = re.compile(r"\b(?:i|i'm|my|me|we|our|us|ich|mein\w*|wir|unser\w*|mir|uns)\b")
_GREETING = re.compile(
    r"^\W*(?:hi|hello|hallo|hey|dear|sehr geehrte[rs]?|guten (?:tag|morgen|abend)|"
    r"liebe[rs]?|servus|moin|gruezi|gruss gott|bonjour|salut|ciao|buongiorno|hola|"
    r"goedemorgen|goedendag|hej|witam|dzien dobry)\b"
    r"(?![.,!]? (?:this is|user|customer|sender|client|valued|recipient|mail ?user))"
)

# Sender local parts and display names.
_DAEMON_LOCAL = re.compile(r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon|mdaemon)$")
_DAEMON_NAME = re.compile(
    r"^(?:mail delivery (?:sub)?system|mail deliver system|mailer[- ]daemon|"
    r"mail[- ]daemon|delivery subsystem|mail administrator|mail delivery service)$"
)
_POSTMASTER_LOCAL = re.compile(
    r"^(?:postmaster|post[-_.]?master|poostmaster|mail[-_.]?delivery[-_.]?system|"
    r"system ?administrator|mail[-_.]?delivery|mailadmin|mail[-_.]?admin|"
    r"(?:smtp|mail|e500_smtp)_?mail_?service|mmsc|mailer|bounces?|"
    r".*_antivirus_.*|imss|mailsweeper|mailscanner)$"
)
_SYSTEM_NAME = re.compile(
    r"system administrator|postmaster|mail ?server|delivery|mailer|administrator|"
    r"antivirus|virus ?wall|mmsc|ndr"
)
_NOREPLY_LOCAL = re.compile(
    r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|noreply|no[-_.]?response|"
    r"notifications?|notify|auto[-_.]?reply|autoresponder|automailer|system|daemon)"
    r"(?:[-_.+].*)?$"
)
_LIST_ADMIN_LOCAL = re.compile(
    r"(?:-admin|-owner|-bounces?|-request|-errors|-approval)(?:\+.*)?$|^owner-"
)
_LIST_REJECTION = re.compile(
    r"not (?:a )?member|non-?member|not (?:allowed|permitted|authori[sz]ed) to post|"
    r"posting (?:is )?(?:restricted|rejected|denied)|loop alert|duplicated message-id|"
    r"message (?:has been |was )?rejected|your message .{0,40}(?:was|has been) rejected"
)

# Quoted history in a reply or a forward.
_QUOTE_SEPARATOR = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|ursprungliche nachricht|originalnachricht|"
    r"forwarded message|weitergeleitete nachricht|message d'origine|message transfere|"
    r"messaggio originale|messaggio inoltrato|mensaje original|mensaje reenviado|"
    r"oorspronkelijk bericht|doorgestuurd bericht|oryginalna wiadomosc)|"
    r"begin forwarded message|anfang der weitergeleiteten nachricht|_{20,}\s*$)"
)
_WROTE_LINE = re.compile(
    r"(?:wrote|schrieb|a ecrit|ha scritto|escribio|schreef|skrev|napisal\(a\)|napisal)"
    r"\s*:?\s*$"
)
_QUOTE_FROM = re.compile(r"^\s*\*?(?:from|von|de|da|van|od|fra|fran)\s*:\*?\s")
_QUOTE_NEXT = re.compile(
    r"^\s*\*?(?:sent|gesendet|date|datum|envoye|inviato|enviado|verzonden|wyslano|to|an|"
    r"a|aan|do|til|till|subject|betreff|objet|oggetto|asunto|onderwerp)\s*:"
)

_LIST_HEADERS = (
    "list-id",
    "list-post",
    "list-unsubscribe",
    "list-subscribe",
    "list-help",
    "list-archive",
    "list-owner",
    "mailing-list",
    "x-mailing-list",
    "x-beenthere",
    "x-mailman-version",
    "x-ml-name",
)
# Non-standard headers that auto-responders set (a value "no"/"false"/"0" is ignored).
_AUTOREPLY_HEADERS = (
    "x-autoreply",
    "x-autorespond",
    "x-autoresponder",
    "x-autoresponse",
    "x-autoreply-from",
    "x-mail-autoreply",
    "x-auto-reply",
    "x-vacation",
)
# Ticket systems' headers.  Some are on every mail they send, agents' replies included
# (old OTRS versions put X-OTRS-Loop on all of them), so they only count together with an
# acknowledgement or another sign of an automatic answer.
_TICKET_MARKER_HEADERS = (
    "x-otrs-loop",
    "x-otobo-loop",
    "x-znuny-loop",
    "x-zammad-loop",
    "x-rt-loop-prevention",
    "rt-ticket",
    "rt-originator",
    "x-otrs-ticketnumber",
    "x-zammad-ticket-id",
    "x-zammad-article-id",
    "x-redmine-issue-id",
    "x-redmine-host",
    "x-jira-fingerprint",
    "x-zendesk-from-account-id",
    "x-freshdesk-ticket-id",
    "x-ticket-id",
)
_TICKET_MAILER = re.compile(
    r"\b(?:otrs|otobo|znuny|zammad|request tracker|rt/\d|jira|zendesk|freshdesk|osticket|"
    r"kayako|servicenow|spiceworks|help ?scout|glpi|itop|redmine|mantis|bugzilla|"
    r"helpdesk|help desk|ticket)\b"
)
_FALSY = frozenset({"no", "false", "0", "off", "none"})

_STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_SMTP_STATUS_RE = re.compile(r"(?<![\d.])[245]\d\d[ -]#?([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)")
_HASH_STATUS_RE = re.compile(r"#([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)")
_FIELD_STATUS_RE = re.compile(r"status:?\s*([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)", re.I)
_SMTP_CODE_RE = re.compile(r"(?<![\w.:/-])([45])[0-5]\d(?:[ -](?=[a-z#<(\[]|[45]\.\d))", re.I)
_MSGID_IN_TEXT = re.compile(r"^[ \t>]*message-id:[ \t]*(<[^>\r\n]{1,250}>|\S{3,250})", re.I | re.M)
_ADDR_LINE = re.compile(r"^\s*<([^<>\s@]{1,100}@[^<>\s@]{1,200})>\s*:", re.M)
_ADDR_RE = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]{1,100}@[\w-]+(?:\.[\w-]+)+")
_TAG_RE = re.compile(r"<[^<>]{0,2000}>")
_WS_RE = re.compile(r"\s+")
_SPACES_RE = re.compile(r"[ \t\f\v\xa0]+")

_TNEF_SIGNATURE = 0x223E9F78
_TNEF_ATT_MESSAGE_CLASS = 0x00078008


# --------------------------------------------------------------------------- text helpers


def _fold(value: str, *, keep_lines: bool = False) -> str:
    """Normalise for matching: no accents, casefolded, single spaces."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    if keep_lines:
        lines = (_SPACES_RE.sub(" ", line).strip() for line in stripped.splitlines())
        return "\n".join(lines)
    return _WS_RE.sub(" ", stripped).strip()


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset; unknown or non-text codecs fall back."""
    if charset:
        try:
            name = codecs.lookup(charset.strip().strip("\"'")).name
        except (LookupError, ValueError, TypeError):
            name = ""
        if name:
            try:
                return data.decode(name, "replace")
            except (LookupError, ValueError, TypeError):
                pass  # "base64" and the like are not text codecs
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _header_text(value: object) -> str:
    """A raw header value (str, Header, anything) as str, never raising."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    if value is None:
        return ""
    try:
        return str(value)  # email.header.Header and other objects
    except (LookupError, ValueError, TypeError):
        return ""


def _decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; unknown charsets and bad base64 degrade."""
    if "=?" not in value:
        return decode_8bit_header(value)
    try:
        chunks = decode_header(value)
    except (HeaderParseError, LookupError, ValueError, TypeError, IndexError):
        return decode_8bit_header(value)
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(decode_8bit_header(chunk))
        elif charset is None:
            out.append(decode_8bit_header(chunk.decode("raw-unicode-escape", "replace")))
        else:
            out.append(_decode_bytes(chunk, charset))
    return "".join(out)


def _strip_html(text: str) -> str:
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
    text = re.sub(r"(?i)<br\s*/?>|</p\s*>|</div\s*>|</tr\s*>", "\n", text)
    return html.unescape(_TAG_RE.sub(" ", text))


def _strip_quotes(text: str) -> str:
    """The new text of a reply or forward: quoted lines and quoted history removed."""
    lines = text.splitlines()
    out: list[str] = []
    for index, line in enumerate(lines):
        if line.startswith(">"):
            continue
        if _QUOTE_SEPARATOR.match(line) or (out and _WROTE_LINE.search(line)):
            break
        if _QUOTE_FROM.match(line) and any(
            _QUOTE_NEXT.match(n) for n in lines[index + 1 : index + 4]
        ):
            break
        out.append(line)
    return "\n".join(out)


def _normalise_msgid(value: str) -> str | None:
    value = value.strip()
    match = re.search(r"<([^<>\s]+)>", value)
    if match:
        ident = match.group(1)
    else:
        tokens = [t.strip("<>") for t in re.split(r"[\s,]+", value) if t.strip("<>")]
        ident = next((t for t in tokens if "@" in t), tokens[0] if tokens else "")
    ident = ident.strip()
    if not ident or len(ident) > 250:
        return None
    return ident


def _address(value: str) -> tuple[str, str]:
    """(display name, address) of a From-like header; never raises."""
    try:
        name, addr = parseaddr(value)
    except (ValueError, TypeError, IndexError, AttributeError):
        name, addr = "", ""
    if not addr:
        match = _ADDR_RE.search(value)
        addr = match.group(0) if match else ""
    return _decode_words(name).strip(), addr.strip()


def _local_part(addr: str) -> str:
    addr = addr.strip().strip("<>").strip().strip('"')
    local = addr.rsplit("@", 1)[0]
    local = re.split(r"\\?@", local)[0]  # "Postmaster\@example.com@relay"
    return local.strip().strip('"').rstrip("\\").casefold()


def _domains(own_domains: Sequence[str]) -> set[str]:
    return {_fold(d).strip(".").lstrip("@") for d in own_domains if d and d.strip()}


def _pretty(name: str) -> str:
    special = {"rt": "RT", "otrs": "OTRS", "otobo": "OTOBO"}
    return "-".join(special.get(p, p.capitalize()) for p in name.split("-"))


# --------------------------------------------------------------------------- MIME helpers


def _raw_headers(part: Message) -> list[tuple[str, str]]:
    """(lower-case name, raw value) pairs; avoids the policies' header parsing."""
    try:
        items = list(part.raw_items())
    except (AttributeError, TypeError):
        return []
    return [(str(name).strip().casefold(), _header_text(value)) for name, value in items]


def _first(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _content_type_of(headers: list[tuple[str, str]], default: str) -> tuple[str, str]:
    """(lower-case type, raw parameter string), with compat32's fallbacks."""
    raw = _first(headers, "content-type")
    if raw is None:
        return default, ""
    main, _, params = decode_8bit_header(raw).partition(";")
    ctype = re.sub(r"\([^)]*\)|\s", "", main).casefold()
    if ctype.count("/") != 1:
        ctype = "text/plain"
    return ctype, params


def _param(params: str, name: str) -> str | None:
    match = re.search(
        r"(?:^|;)\s*" + re.escape(name) + r"\*?\s*=\s*(?:\"([^\"]*)\"|([^;\s]*))",
        params,
        re.I,
    )
    if not match:
        return None
    value = match.group(1) if match.group(1) is not None else match.group(2)
    return value.strip() if value else None


def _default_type(part: Message) -> str:
    try:
        return str(part.get_default_type())
    except (AttributeError, TypeError):
        return "text/plain"


def _subparts(part: Message) -> list[Message]:
    try:
        payload = part.get_payload()
    except (LookupError, ValueError, TypeError, AttributeError):
        return []
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    return []


def _payload_bytes(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except (LookupError, ValueError, TypeError, AttributeError, NameError):
        # NameError: compat32's get_payload(decode=True) fails with UnboundLocalError on
        # a bytes payload with a quoted-printable or base64 transfer encoding.
        try:
            data = part.get_payload()
        except (LookupError, ValueError, TypeError, AttributeError):
            data = None
    if isinstance(data, bytes | bytearray):
        return bytes(data[:_MAX_PART_BYTES])
    if isinstance(data, str):
        return data[:_MAX_PART_BYTES].encode("utf-8", "surrogateescape")
    return b""


@dataclass
class _Part:
    msg: Message
    ctype: str
    params: str
    headers: list[tuple[str, str]]

    @property
    def is_attachment(self) -> bool:
        disposition = _fold(_first(self.headers, "content-disposition") or "")
        if disposition.startswith("attachment"):
            return True
        return bool(_param(self.params, "name")) and not self.ctype.startswith("text/")

    def text(self) -> str:
        text = _decode_bytes(_payload_bytes(self.msg), _param(self.params, "charset"))
        if self.ctype == "text/html":
            text = _strip_html(text)
        return text


def _walk(msg: Message) -> list[_Part]:
    """The message's own MIME tree, not descending into attached messages."""
    out: list[_Part] = []
    stack: list[tuple[Message, int, str]] = [(msg, 0, _default_type(msg))]
    while stack and len(out) < _MAX_PARTS:
        part, depth, default = stack.pop()
        headers = _raw_headers(part)
        ctype, params = _content_type_of(headers, default)
        out.append(_Part(part, ctype, params, headers))
        if ctype.startswith("multipart/") and depth < _MAX_DEPTH:
            child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            children = _subparts(part)
            stack.extend((child, depth + 1, child_default) for child in reversed(children))
    return out


def _field_blocks(text: str) -> list[dict[str, str]]:
    """RFC 822-style field blocks separated by blank lines (DSN bodies)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, None
            continue
        if line[:1] in (" ", "\t") and last is not None:
            current[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if sep and name and " " not in name:
            last = name.casefold()
            current.setdefault(last, value.strip())
        else:
            last = None
    if current:
        blocks.append(current)
    return blocks


def _dsn_blocks(part: Message) -> list[dict[str, str]]:
    """Field blocks of a message/delivery-status (or similar) part."""
    blocks: list[dict[str, str]] = []
    children = _subparts(part)
    for child in children:
        fields: dict[str, str] = {}
        for name, value in _raw_headers(child):
            fields.setdefault(name, decode_8bit_header(value).strip())
        if fields:
            blocks.append(fields)
    known = ("action", "final-recipient", "status", "disposition", "feedback-type")
    if any(key in block for block in blocks for key in known):
        return blocks
    # A string payload, or a transfer-encoded body the parser could not split.
    text = _decode_bytes(_payload_bytes(part), "utf-8")
    if not text.strip():
        text = "\n\n".join(_decode_bytes(_payload_bytes(c), "utf-8") for c in children)
    return _field_blocks(text)


@dataclass(frozen=True)
class _Recipient:
    address: str
    action: str
    status: str | None


def _status_of(value: str | None) -> str | None:
    if not value:
        return None
    match = _STATUS_RE.search(value)
    return ".".join(match.groups()) if match else None


def _recipients(blocks: list[dict[str, str]]) -> list[_Recipient]:
    out: list[_Recipient] = []
    for block in blocks:
        if not any(k in block for k in ("final-recipient", "original-recipient", "action")):
            continue
        raw = block.get("final-recipient") or block.get("original-recipient") or ""
        address = raw.split(";", 1)[-1].strip().strip("<>").strip()
        action = _fold(block.get("action", "")).partition(" ")[0]
        status = _status_of(block.get("status")) or _status_of(block.get("diagnostic-code"))
        out.append(_Recipient(address, action, status))
    return out


# --------------------------------------------------------------------------- the view


class _Mail:
    """Facts about one message, computed on first use."""

    def __init__(self, msg: Message, envelope_sender: str | None) -> None:
        self.headers = _raw_headers(msg)
        self.parts = _walk(msg)
        self.top = self.parts[0]
        self.envelope_sender = envelope_sender

    # headers ---------------------------------------------------------------
    def get(self, name: str) -> str | None:
        value = _first(self.headers, name)
        return None if value is None else decode_8bit_header(value)

    def has(self, name: str) -> bool:
        return any(key == name for key, _ in self.headers)

    def folded(self, name: str) -> str:
        return _fold(self.get(name) or "")

    @cached_property
    def subject(self) -> str:
        return _fold(_decode_words((self.get("subject") or "")[:_MAX_HEADER]))

    @cached_property
    def sender(self) -> tuple[str, str, str]:
        """(folded display name, address, folded local part) of From."""
        name, addr = _address((self.get("from") or "")[:_MAX_HEADER])
        return _fold(name), addr, _local_part(addr)

    @cached_property
    def null_sender(self) -> str | None:
        """Reason name when the return path is null (``<>``, MAILER-DAEMON)."""
        if self.envelope_sender is not None:
            env = self.envelope_sender.strip().strip("<>").strip()
            if not env:
                return "envelope:null"
            if _DAEMON_LOCAL.match(_local_part(env)):
                return "envelope:mailer-daemon"
        return_path = self.get("return-path")
        if return_path is not None:
            value = return_path.strip()
            inner = value.strip("<>").strip()
            if (not inner and "<" in value) or inner == "#@[]":  # qmail writes <#@[]>
                return "header:Return-Path=<>"
            if inner and _DAEMON_LOCAL.match(_local_part(inner)):
                return "header:Return-Path=MAILER-DAEMON"
        raw_from = (self.get("from") or "").replace(" ", "")
        if raw_from and not self.sender[1] and "<>" in raw_from:
            return "header:From=<>"
        return None

    # subject ---------------------------------------------------------------
    @cached_property
    def subject_core(self) -> str:
        """The subject without leading list or ticket tags."""
        subject = self.subject
        for _ in range(3):
            stripped = _LEADING_TAG.sub("", subject, count=1)
            if stripped == subject:
                break
            subject = stripped
        return subject

    @cached_property
    def is_reply_or_forward(self) -> bool:
        return bool(_REPLY_FWD_PREFIX.match(self.subject_core))

    @cached_property
    def is_forward(self) -> bool:
        return bool(_FORWARD_PREFIX.match(self.subject_core))

    @property
    def heuristic_subject(self) -> str:
        """The subject, or "" when it is a reply or a forward."""
        return "" if self.is_reply_or_forward else self.subject

    # body ------------------------------------------------------------------
    @cached_property
    def text(self) -> str:
        """Inline text of the message's own parts (plain preferred over HTML)."""
        plain: list[str] = []
        other: list[str] = []
        size = 0
        for part in self.parts:
            if size >= _MAX_TEXT:
                break
            is_container = part.ctype.startswith("multipart/") and bool(_subparts(part.msg))
            if is_container or part.is_attachment:
                continue
            if part.ctype not in ("text/plain", "text/html") and not part.ctype.startswith(
                "multipart/"  # a multipart whose boundary is broken: its body is text
            ):
                continue
            text = part.text()[:_MAX_TEXT]
            (other if part.ctype == "text/html" else plain).append(text)
            size += len(text)
        chosen = plain if any(t.strip() for t in plain) else other
        return "\n".join(chosen)[:_MAX_TEXT]

    @cached_property
    def body(self) -> str:
        """All inline text, folded."""
        return _fold(self.text)

    @cached_property
    def fresh(self) -> str:
        """The inline text without quoted history, folded ("" for forwards)."""
        if self.is_forward:
            return ""
        return _fold(_strip_quotes(_fold(self.text, keep_lines=True)))

    @property
    def opening(self) -> str:
        return self.fresh[:_TOP_OF_BODY]

    @cached_property
    def human_cues(self) -> tuple[bool, bool, bool]:
        """(asks for help, greets at the start, asks a question at the start)."""
        opening = self.opening
        return (
            bool(_HELP_SUBJECT.search(self.subject_core)) or bool(_HELP_BODY.search(opening)),
            bool(_GREETING.match(opening)),
            "?" in opening,
        )

    # structure -------------------------------------------------------------
    def parts_of(self, *ctypes: str) -> list[_Part]:
        return [p for p in self.parts[1:] if p.ctype in ctypes]

    @cached_property
    def returned_parts(self) -> list[_Part]:
        return self.parts_of(
            "message/rfc822",
            "text/rfc822-headers",
            "message/rfc822-headers",
            "message/global",
            "message/global-headers",
            "message/partial",
        )


# --------------------------------------------------------------------------- extraction


def _returned_message_id(mail: _Mail) -> str | None:
    for part in mail.returned_parts:
        if part.ctype in ("message/rfc822", "message/global"):
            for child in _subparts(part.msg):
                value = _first(_raw_headers(child), "message-id")
                if value:
                    return _normalise_msgid(decode_8bit_header(value))
            text = _decode_bytes(_payload_bytes(part.msg), "utf-8")
        else:
            text = part.text()
        match = _MSGID_IN_TEXT.search(text)
        if match:
            return _normalise_msgid(match.group(1))
    return None


def _reply_target(mail: _Mail) -> str | None:
    in_reply_to = mail.get("in-reply-to")
    return _normalise_msgid(in_reply_to) if in_reply_to else None


def _last_reference(mail: _Mail) -> str | None:
    idents = re.findall(r"<([^<>\s]+)>", mail.get("references") or "")
    return idents[-1] if idents else None


def _bounce_original_id(mail: _Mail) -> str | None:
    ident = _returned_message_id(mail) or _reply_target(mail)
    if ident:
        return ident
    match = _MSGID_IN_TEXT.search(mail.text)
    if match:
        return _normalise_msgid(match.group(1))
    return _last_reference(mail)


def _auto_original_id(mail: _Mail) -> str | None:
    return _reply_target(mail) or _last_reference(mail) or _returned_message_id(mail)


def _text_status(text: str) -> str | None:
    for pattern in (_SMTP_STATUS_RE, _HASH_STATUS_RE, _FIELD_STATUS_RE):
        match = pattern.search(text)
        if match:
            return match.group(1)
    match = _STATUS_RE.search(text)
    if match and match.group(1) in "45":
        return ".".join(match.groups())
    return None


def _failed_recipients_from_text(mail: _Mail) -> list[str]:
    found: list[str] = []
    header = mail.get("x-failed-recipients")
    if header:
        found.extend(a for a in re.split(r"[\s,;]+", header.strip()) if "@" in a)
    if not found:
        found.extend(r.address for r in _recipients(_field_blocks(mail.text)) if r.address)
    if not found:
        found.extend(_ADDR_LINE.findall(mail.text))
    unique = dict.fromkeys(a.strip().strip("<>") for a in found)
    return [a for a in unique if a][:50]


# --------------------------------------------------------------------------- verdicts


def _bounce_verdict(mail: _Mail, reasons: list[str]) -> LoopVerdict:
    """A bounce without a machine-readable delivery-status part."""
    if _DSN_TEXT_FIELD.search(mail.text):
        reasons.append("body:dsn-fields")
        blocks = _field_blocks(mail.text)
    else:
        blocks = []
    recipients = [r for r in _recipients(blocks) if r.action not in ("delivered", "relayed")]
    status = next((r.status for r in recipients if r.status), None) or _text_status(mail.text)
    delayed = bool(_DELAY_TEXT.search(mail.heuristic_subject)) or any(
        r.action.startswith("delay") for r in recipients
    )
    permanent: bool | None
    if delayed and not (status or "").startswith("5"):
        permanent = False
    elif status:
        permanent = status.startswith("5")
    else:
        code = _SMTP_CODE_RE.search(mail.text)
        permanent = (code.group(1) == "5") if code else None
    return LoopVerdict(
        kind="bounce",
        reasons=tuple(reasons),
        bounce_status=status,
        permanent=permanent,
        failed_recipients=tuple(_failed_recipients_from_text(mail)),
        original_message_id=_bounce_original_id(mail),
    )


def _dsn_verdict(mail: _Mail, part: _Part | None, reasons: list[str]) -> LoopVerdict:
    """RFC 3464: per-recipient Action, Status and Final-Recipient."""
    blocks = _dsn_blocks(part.msg) if part is not None else _field_blocks(mail.text)
    recipients = _recipients(blocks)
    failed = [r for r in recipients if r.action.startswith("fail")]
    delayed = [r for r in recipients if r.action.startswith("delay")]
    unknown = [
        r
        for r in recipients
        if r.action not in ("delivered", "relayed", "expanded")
        and not r.action.startswith(("fail", "delay"))
        and (r.status or "")[:1] in ("4", "5")
    ]
    chosen = failed or delayed or unknown
    first = chosen[0] if chosen else None
    status = first.status if first else None
    permanent: bool | None = None
    if first is not None:
        if first.action.startswith("delay"):
            permanent = False
        elif first.action.startswith("fail") or (status or "").startswith("5"):
            # "failed" with a 4.x.x status: the MTA gave up, it will not retry
            permanent = True
        elif (status or "").startswith("4"):
            permanent = False
    if status:
        reasons.append(f"dsn:status={status}")
    if first is not None and first.action:
        reasons.append(f"dsn:action={first.action}")
    elif recipients and not chosen:
        reasons.append("dsn:no-failure")
    return LoopVerdict(
        kind="bounce",
        reasons=tuple(reasons),
        bounce_status=status,
        permanent=permanent,
        failed_recipients=tuple(dict.fromkeys(r.address for r in chosen if r.address)),
        original_message_id=_bounce_original_id(mail),
    )


def _arf_verdict(mail: _Mail, reasons: list[str]) -> LoopVerdict:
    """RFC 5965 abuse report about our mail; the complainant is in failed_recipients."""
    recipients: list[str] = []
    for part in mail.parts_of("message/feedback-report"):
        for block in _dsn_blocks(part.msg):
            for key in ("original-rcpt-to", "removal-recipient"):
                if block.get(key):
                    recipients.append(block[key].strip().strip("<>"))
    return LoopVerdict(
        kind="bounce",
        reasons=tuple(reasons),
        failed_recipients=tuple(dict.fromkeys(recipients)),
        original_message_id=_returned_message_id(mail) or _reply_target(mail),
    )


def _mdn_verdict(mail: _Mail, reasons: list[str]) -> LoopVerdict:
    """RFC 8098 read receipt; an automatic "deleted" disposition is a Sieve reject."""
    ident: str | None = None
    rejected: list[str] = []
    for part in mail.parts_of("message/disposition-notification"):
        for block in _dsn_blocks(part.msg):
            if block.get("original-message-id") and ident is None:
                ident = _normalise_msgid(block["original-message-id"])
            disposition = _fold(block.get("disposition", ""))
            if disposition.startswith("automatic-action") and re.search(
                r";\s*(?:deleted|denied|failed)", disposition
            ):
                recipient = block.get("final-recipient") or block.get("original-recipient") or ""
                rejected.append(recipient.split(";", 1)[-1].strip().strip("<>"))
    if rejected:
        status = _text_status(mail.text)
        return LoopVerdict(
            kind="bounce",
            reasons=(*reasons, "mdn:automatic-rejection"),
            bounce_status=status,
            permanent=True if status is None else status.startswith("5"),
            failed_recipients=tuple(a for a in dict.fromkeys(rejected) if a),
            original_message_id=ident or _bounce_original_id(mail),
        )
    return LoopVerdict(
        kind="auto_reply",
        reasons=tuple(reasons),
        original_message_id=ident or _auto_original_id(mail),
    )


def _tnef_head(part: _Part) -> bytes:
    """The first bytes of a winmail.dat, without decoding all of a big one."""
    cte = _fold(_first(part.headers, "content-transfer-encoding") or "")
    if cte == "base64":
        try:
            raw = part.msg.get_payload()
        except (LookupError, ValueError, TypeError, AttributeError):
            raw = None
        if isinstance(raw, str):
            chunk = re.sub(r"[^A-Za-z0-9+/]", "", raw[: _TNEF_HEAD * 2])
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            try:
                return base64.b64decode(chunk)
            except ValueError:
                return b""
    return _payload_bytes(part.msg)[:_TNEF_HEAD]


def _tnef_message_class(mail: _Mail) -> str | None:
    """MAPI message class of a TNEF body, e.g. ``REPORT.IPM.Note.IPNRN``."""
    for part in mail.parts:
        if part.ctype not in ("application/ms-tnef", "application/vnd.ms-tnef"):
            continue
        data = _tnef_head(part)
        if len(data) < 6 or int.from_bytes(data[:4], "little") != _TNEF_SIGNATURE:
            continue
        pos = 6
        while pos + 9 <= len(data):
            level = data[pos]
            attribute = int.from_bytes(data[pos + 1 : pos + 5], "little")
            length = int.from_bytes(data[pos + 5 : pos + 9], "little")
            start = pos + 9
            if level != 1:  # the attachments' attributes follow the message's own
                break
            if attribute == _TNEF_ATT_MESSAGE_CLASS:
                value = data[start : start + min(length, 200)].split(b"\0")[0]
                return value.decode("ascii", "replace").strip() or None
            pos = start + length + 2
    return None


def _tnef_verdict(mail: _Mail) -> LoopVerdict | None:
    """Exchange reports and rule replies sent as winmail.dat."""
    message_class = _tnef_message_class(mail)
    if not message_class:
        return None
    folded = message_class.casefold()
    reasons = [f"tnef:{message_class}"]
    if folded.startswith("report.") and folded.endswith((".ndr", ".delayed")):
        return _bounce_verdict(mail, reasons)
    if folded.startswith("report.") and folded.endswith((".dr", ".relayed")):
        return LoopVerdict(kind="bounce", reasons=tuple(reasons), original_message_id=None)
    kind: LoopKind | None = None
    if folded.startswith(("report.", "ipm.recall.report")):
        kind = "auto_reply"  # read and not-read receipts (IPNRN, IPNNRN), recall reports
    elif folded.startswith("ipm.note.rules.ooftemplate"):
        kind = "out_of_office"
    elif folded.startswith("ipm.note.rules.replytemplate"):
        kind = "auto_reply"
    if kind is None:
        return None
    return LoopVerdict(
        kind=kind, reasons=tuple(reasons), original_message_id=_auto_original_id(mail)
    )


def _auto_verdict(mail: _Mail, reasons: list[str]) -> LoopVerdict:
    """An automatic answer: out_of_office when it says so, else auto_reply."""
    ooo = _ooo_cue(mail)
    kind: LoopKind = "out_of_office" if ooo else "auto_reply"
    if ooo and ooo not in reasons:
        reasons = [*reasons, ooo]
    return LoopVerdict(
        kind=kind, reasons=tuple(reasons), original_message_id=_auto_original_id(mail)
    )


# --------------------------------------------------------------------------- signals


def _own_marker(mail: _Mail) -> str | None:
    for name, _ in mail.headers:
        if name.startswith(_OWN_MARKER_PREFIX):
            return f"own:header={_pretty(name)}"
    return None


def _own_message_id(mail: _Mail, own: set[str]) -> str | None:
    ident = _normalise_msgid(mail.get("message-id") or "")
    if not own or not ident or "@" not in ident:
        return None
    domain = ident.rsplit("@", 1)[1].strip().strip(".").casefold()
    return f"own:message-id={domain}" if domain in own else None


def _report_type(mail: _Mail) -> str:
    if mail.top.ctype != "multipart/report":
        return ""
    return _fold(_param(mail.top.params, "report-type") or "")


def _auto_submitted(mail: _Mail) -> str | None:
    value = mail.get("auto-submitted")
    if value is None:
        return None
    token = _fold(value).split(";")[0].split("(")[0].strip()
    return token or None


def _explicit_auto_headers(mail: _Mail) -> list[str]:
    """Headers that only automatic responders set."""
    reasons: list[str] = []
    submitted = _auto_submitted(mail)
    if submitted and submitted != "no":
        reasons.append(f"header:Auto-Submitted={submitted}")
    for name in _AUTOREPLY_HEADERS:
        value = mail.get(name)
        if value is not None and _fold(value) not in _FALSY:
            reasons.append(f"header:{_pretty(name)}")
    precedence = mail.folded("precedence")
    if precedence in ("auto_reply", "auto-reply", "autoreply"):
        reasons.append(f"header:Precedence={precedence}")
    apple = mail.folded("x-apple-action")
    if "vacation" in apple or "autoreply" in apple:
        reasons.append("header:X-Apple-Action=vacation")
    if mail.folded("x-autogenerated") == "reply":
        reasons.append("header:X-Autogenerated=reply")
    if any(
        "$autoreply" in name or "$autoreply" in value.casefold() for name, value in mail.headers
    ):
        reasons.append("header:$AutoReply")  # Lotus Notes
    return reasons


def _weak_auto_headers(mail: _Mail) -> list[str]:
    """Headers that automatic answers carry, but that are not proof on their own."""
    reasons: list[str] = []
    precedence = mail.folded("precedence")
    if precedence in ("bulk", "junk"):
        reasons.append(f"header:Precedence={precedence}")
    for name in ("x-loop", *_TICKET_MARKER_HEADERS):
        if mail.has(name):
            reasons.append(f"header:{_pretty(name)}")
            break
    if _TICKET_MAILER.search(mail.folded("x-mailer")):
        reasons.append("header:X-Mailer=ticket-system")
    if _NOREPLY_LOCAL.match(mail.sender[2]):
        reasons.append("sender:no-reply")
    return reasons


def _from_ticket_system(mail: _Mail) -> bool:
    """Ticket systems set Precedence: bulk on their agents' replies too (X-Loop alone is
    not a ticket system: mailing lists and procmail set it)."""
    return any(mail.has(n) for n in _TICKET_MARKER_HEADERS) or bool(
        _TICKET_MAILER.search(mail.folded("x-mailer"))
    )


def _list_reasons(mail: _Mail, own: set[str]) -> list[str]:
    reasons: list[str] = []
    for name in _LIST_HEADERS:
        value = mail.get(name)
        if value is None:
            continue
        if own and name in ("list-id", "list-post") and _mentions_domain(value, own):
            continue  # our own intake alias is a group (e.g. support@ as a Google Group)
        reasons.append(f"header:{_pretty(name)}")
    if mail.folded("precedence") == "list":
        reasons.append("header:Precedence=list")
    return reasons


def _mentions_domain(value: str, domains: set[str]) -> bool:
    folded = _fold(value)
    return any(
        re.search(r"[.@]" + re.escape(domain) + r"(?:>|$|\s|\?)", folded) for domain in domains
    )


def _list_subject_tag(mail: _Mail, own: set[str]) -> str | None:
    """A Mailman-style "[name] subject" sent to the list address name@... (list headers
    stripped, e.g. by an archive)."""
    subject = _REPLY_FWD_PREFIX.sub("", mail.subject).strip()
    match = re.match(r"^\[([a-z0-9][a-z0-9._-]{1,60})\]", subject)
    if not match or match.group(1).isdigit():
        return None
    tag = match.group(1)
    recipients = [
        addr.casefold().rpartition("@")
        for name in ("to", "cc")
        for addr in _ADDR_RE.findall(mail.get(name) or "")
    ]
    if any(domain in own for _, _, domain in recipients):
        return None  # written to us directly, not received through the list
    if any(local == tag for local, _, _ in recipients):
        return "subject:list-tag"
    return None


def _subject_head(subject: str) -> str:
    """What an auto-responder prepends: up to the first ':', or a leading [tag]."""
    match = re.match(r"^\s*\[([^\]]{1,80})\]", subject)
    if match:
        return match.group(1)
    head, sep, _ = subject.partition(":")
    return head if sep and len(head) <= 80 else ""


def _heads(mail: _Mail) -> tuple[str, str]:
    """Subject heads with and without leading tags ("[Auto-Reply] x", "[list] Auto: x")."""
    return _subject_head(mail.subject), _subject_head(mail.subject_core)


def _auto_subject(mail: _Mail) -> tuple[str, bool] | None:
    """(reason, strong) when the subject looks like an auto-responder's."""
    if mail.is_reply_or_forward:
        return None
    subject = mail.subject_core
    head = _subject_head(subject)
    if any(_AUTO_SUBJECT_STRONG.search(h) for h in _heads(mail) if h):
        return "subject:auto-reply", True
    if _AUTO_SUBJECT_SUFFIX.search(subject) or _AUTO_SUBJECT_STRONG.fullmatch(
        subject.strip(" .!-")
    ):
        return "subject:auto-reply", True
    if head and _AUTO_SUBJECT_WEAK.match(head.strip()):
        rest = subject[len(head) :]
        if _OOO_WORDS.search(rest) or re.search(r"\bis out\b|\bist (?:nicht|ausser)\b", rest):
            return "subject:auto-reply", True  # Lotus Notes: "AUTO: X is out of the office"
        return "subject:auto-reply-weak", False
    return None


def _ooo_cue(mail: _Mail) -> str | None:
    """Does the automatic answer say that someone is away?"""
    if "vacation" in mail.folded("auto-submitted") or "vacation" in mail.folded("x-apple-action"):
        return "header:vacation"
    subject = mail.heuristic_subject
    if subject:
        heads = [h.strip() for h in _heads(mail) if h]
        if _OOO_WORDS.search(subject) or any(_EXCHANGE_OOF_HEAD.search(h) for h in heads):
            return "subject:out-of-office"
        if any(_AUTO_SUBJECT_WEAK.match(h) for h in heads):
            return "subject:out-of-office"
    if _OOO_BODY.search(mail.fresh[:_HEAD_OF_BODY]):
        return "body:out-of-office"
    return None


def _exchange_prefix(mail: _Mail) -> bool:
    """Exchange puts "<prefix>: <Thread-Topic>" on the answers it generates."""
    topic = _fold(_decode_words(mail.get("thread-topic") or ""))
    subject = mail.subject_core
    return (
        bool(topic)
        and bool(_subject_head(subject))
        and subject.endswith(topic)
        and (subject != topic)
    )


# --------------------------------------------------------------------------- rules


def _non_dsn_bounce(mail: _Mail) -> list[str]:
    """Reasons when the message is a bounce without a delivery-status part."""
    if mail.get("x-failed-recipients"):
        return ["header:X-Failed-Recipients"]
    name, addr, local = mail.sender
    subject = mail.heuristic_subject
    bounce_subject = bool(subject) and bool(_BOUNCE_SUBJECT.search(subject))
    template = not mail.is_forward and bool(_BOUNCE_TEMPLATE.search(mail.body))
    words = not mail.is_forward and bool(_BOUNCE_WORDS.search(mail.body))
    returned = bool(mail.returned_parts)
    auto_subject = _auto_subject(mail)
    strong_auto_subject = auto_subject is not None and auto_subject[1]

    daemon = bool(addr or name) and bool(_DAEMON_LOCAL.match(local) or _DAEMON_NAME.match(name))
    if daemon and (not strong_auto_subject or bounce_subject or template):
        return ["sender:mailer-daemon"]

    cues: list[str] = []
    if bounce_subject:
        cues.append("subject:bounce")
    if template:
        cues.append("body:bounce-template")
    elif words:
        cues.append("body:bounce")
    if returned and cues:
        cues.append("part:returned-message")

    null = mail.null_sender
    if null and cues and (bounce_subject or not auto_subject):
        return [null, *cues]
    # A person (postmasters are people, too) who greets or asks is not an MTA.  Bounce
    # subjects often say "error", so for senders that look like systems only the body
    # counts.
    asks, greeting, question = mail.human_cues
    personal_note = greeting or question or bool(_HELP_BODY.search(mail.opening))
    postmaster = (
        bool(_POSTMASTER_LOCAL.match(local))
        or (not addr and bool(_SYSTEM_NAME.search(name)))
        or "postmaster" in name
    )
    if (
        postmaster
        and (cues or (null and not auto_subject))
        and (null or template or returned or not personal_note)
    ):
        return ["sender:postmaster", *([null] if null else []), *cues]

    # Without a sender signal: only an MTA's own wording, and only when nobody writes
    # in their own words before it or asks for help.
    if not (personal_note or asks):
        match = _BOUNCE_TEMPLATE.search(mail.fresh)
        personal = match is not None and bool(_PERSONAL.search(mail.fresh[: match.start()]))
        if bounce_subject and (returned or (match is not None and not personal)):
            return cues
        if _BOUNCE_OPENING.search(mail.opening):
            return ["body:bounce-opening", *cues]
    if (
        (_NOREPLY_LOCAL.match(local) or _SYSTEM_NAME.search(name))
        and len(cues) >= 2
        and not personal_note
    ):
        return ["sender:system", *cues]
    # List managers rejecting a post ("you are not a member", "loop alert").
    if _LIST_ADMIN_LOCAL.search(local) and (
        _LIST_REJECTION.search(subject) or _LIST_REJECTION.search(mail.opening)
    ):
        return ["sender:list-manager", "text:rejected"]
    # Bulk-mail services reporting events as JSON (Amazon SES through SNS).
    body = mail.body
    if body.startswith("{") and re.search(
        r'"notificationtype" ?: ?"(?:bounce|complaint|delivery)"', body[:2000]
    ):
        return ["body:esp-notification"]
    return []


def _weak_evidence(mail: _Mail) -> LoopVerdict | None:
    """Combinations of signals that are not conclusive on their own."""
    # Nothing but automatic mail is sent with a null return path.
    null = mail.null_sender
    if null:
        return _auto_verdict(mail, [null])

    weak_headers = _weak_auto_headers(mail)
    head = mail.fresh[:_HEAD_OF_BODY]
    body_ooo = bool(_OOO_BODY.search(head))
    body_auto = bool(_AUTO_BODY.search(head))
    help_wanted, greeting, question = mail.human_cues
    asks = help_wanted or (greeting and question)

    # An auto-responder's subject ("Automatic reply: ...", "AUTO: X is out of the office").
    auto_subject = _auto_subject(mail)
    if auto_subject:
        reason, strong = auto_subject
        support = list(weak_headers)
        if strong and _exchange_prefix(mail):
            support.append("header:Thread-Topic")
        if strong and mail.has("in-reply-to"):
            support.append("header:In-Reply-To")
        if not asks:
            # Outlook also puts X-Auto-Response-Suppress on some mails people write, so it
            # only backs the subject of an Exchange out-of-office reply.
            if strong and mail.has("x-auto-response-suppress"):
                support.append("header:X-Auto-Response-Suppress")
            if body_auto:
                support.append("body:automatic")
            if body_ooo and (strong or mail.has("in-reply-to")):
                support.append("body:out-of-office")
        if support:
            return _auto_verdict(mail, [reason, *support])

    # Another helpdesk's acknowledgement, with a header that shows it is automatic.
    ack_subject = bool(mail.heuristic_subject) and bool(_ACK_SUBJECT.search(mail.heuristic_subject))
    body_ack = bool(_ACK_BODY.search(head))
    if ack_subject or body_ack:
        support = list(weak_headers)
        if body_auto and not asks:
            support.append("body:automatic")
        if support:
            cue = "subject:acknowledgement" if ack_subject else "body:acknowledgement"
            return _auto_verdict(mail, [cue, *support])

    # Challenge/response ("click the link to be added to my allowed senders").
    if (
        _CHALLENGE_BODY.search(head)
        and _CHALLENGE_ACTION.search(head)
        and (_RECEIVED_OPENING.search(mail.opening) or weak_headers)
        and not asks
    ):
        return LoopVerdict(
            kind="auto_reply",
            reasons=("body:challenge-response", *weak_headers),
            original_message_id=_auto_original_id(mail),
        )

    # Precedence: bulk/junk on its own is bulk mail, except from a ticket system.
    precedence = mail.folded("precedence")
    if precedence in ("bulk", "junk") and not _from_ticket_system(mail):
        if precedence == "junk" or body_ooo or body_auto:
            return _auto_verdict(mail, [f"header:Precedence={precedence}"])
        return LoopVerdict(kind="list", reasons=(f"header:Precedence={precedence}",))
    return None


# --------------------------------------------------------------------------- entry point


def detect_loop(
    msg: Message,
    *,
    own_domains: Sequence[str] = (),
    envelope_sender: str | None = None,
) -> LoopVerdict:
    """Classify ``msg`` as human mail or as one kind of automated mail.

    ``own_domains``: the domains of our own Message-IDs.  A message whose Message-ID is
    in one of them (exact match), or that carries an ``X-Mailtriage-*`` header, is our own
    mail coming back (``own``).  ``envelope_sender``: the SMTP MAIL FROM when known, ``""``
    for the null return path ``<>``.
    """
    mail = _Mail(msg, envelope_sender)
    own = _domains(own_domains)

    marker = _own_marker(mail)
    if marker:
        return LoopVerdict(kind="own", reasons=(marker,))

    # Machine-readable reports.
    report_type = _report_type(mail)
    dsn_types = ("message/delivery-status", "message/global-delivery-status")
    dsn_parts = [mail.top] if mail.top.ctype in dsn_types else mail.parts_of(*dsn_types)
    if report_type in ("delivery-status", "global-delivery-status") or dsn_parts:
        reason = f"report:{report_type}" if report_type else f"part:{dsn_parts[0].ctype}"
        return _dsn_verdict(mail, dsn_parts[0] if dsn_parts else None, [reason])
    if report_type == "feedback-report" or mail.parts_of("message/feedback-report"):
        return _arf_verdict(mail, ["report:feedback-report"])
    if report_type == "disposition-notification" or mail.parts_of(
        "message/disposition-notification"
    ):
        return _mdn_verdict(mail, ["report:disposition-notification"])
    tnef = _tnef_verdict(mail)
    if tnef is not None:
        return tnef

    own_id = _own_message_id(mail, own)
    if own_id:
        return LoopVerdict(kind="own", reasons=(own_id,))

    bounce = _non_dsn_bounce(mail)
    if bounce:
        return _bounce_verdict(mail, bounce)

    explicit = _explicit_auto_headers(mail)
    list_reasons = _list_reasons(mail, own)
    if explicit:
        generated_only = all(r.startswith("header:Auto-Submitted=auto-gen") for r in explicit)
        if not (list_reasons and generated_only):
            return _auto_verdict(mail, explicit)
    if list_reasons:
        return LoopVerdict(kind="list", reasons=tuple(list_reasons))
    list_tag = _list_subject_tag(mail, own)
    if list_tag:
        return LoopVerdict(kind="list", reasons=(list_tag,))

    if _auto_submitted(mail) == "no":
        return LoopVerdict(kind="human", reasons=("header:Auto-Submitted=no",))
    weak = _weak_evidence(mail)
    if weak is not None:
        return weak
    return LoopVerdict(kind="human", reasons=())
