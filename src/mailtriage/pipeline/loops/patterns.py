"""The loop guard's phrase and header tables.

Text patterns match text folded by :func:`mailtriage.pipeline.mime.fold`: casefolded,
German umlauts spelled out (``ü`` -> ``ue``, ``ß`` -> ``ss``), other accents dropped,
runs of white space as one space. A word with an umlaut is written ``ue?`` so that the
spelled-out and the plain-vowel spelling ("zurueck", "zuruck") both match.
"""

from __future__ import annotations

import re

from mailtriage.pipeline.regex_prefix import LeftmostSearch

# The long alternations searched in body text are LeftmostSearch: the same matches,
# tried only where one of their literal prefixes occurs (a few str.find calls instead
# of the regex engine trying every alternative at every position).

# Text patterns match "folded" text: NFKD with combining marks removed, casefolded
# ("ß" -> "ss", "Ü" -> "u"), runs of whitespace collapsed to one space.

# Reply and forward prefixes of many clients and languages, optionally numbered
# ("Re[2]:", "AW(3):", "Re^2:").  "W." is Lotus Notes' German forward prefix.
FORWARD_WORDS = (
    r"fw|fwd|fwdd|wg|tr|enc|fs|vl|doorst|pd|i|trs|tov|wtrd|w\.|weitergeleitet|forward|"
    r"forwarded"
)
REPLY_WORDS = r"re|aw|antw|antwort|sv|vs|odp|rif|r|ris|res|rv|ynt|va|atb|ats|odg|otv|ilt"
PREFIX_TAIL = r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:：]"
REPLY_FWD_PREFIX = re.compile(rf"^(?:{REPLY_WORDS}|{FORWARD_WORDS}){PREFIX_TAIL}")
FORWARD_PREFIX = re.compile(rf"^(?:{FORWARD_WORDS}){PREFIX_TAIL}")
LEADING_TAG = re.compile(r"^\s*\[[^\]]{0,80}\]\s*")

BOUNCE_SUBJECT = re.compile(
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
    r"ue?bermittlungsstatus|rue?cklae?ufer|nicht zugestellt|"
    r"non remis|non distribuable|echec de (?:la )?(?:remise|distribution)|"
    r"rapport de non-remise|notification d'etat de remise|"
    r"no se (?:puede|pudo) entregar|no entregado|notificacion de estado de entrega|"
    r"mancato recapito|non recapitabile|impossibile recapitare|"
    r"onbestelbaar|niet bezorgd|niet afgeleverd|niedostarcz|nie mozna dostarczyc|"
    r"nao entregue|nao foi possivel entregar|не доставлен|недоставлен|"
    r"配信不能|配信エラー|メールエラー|エラー通知|送信エラー|退信|无法投递|未送达"
)
# The message is still being retried.
DELAY_TEXT = re.compile(
    r"\(delay\)|delayed|delay notification|still being retried|will (?:continue|keep) "
    r"(?:trying|to try|retrying)|will be retried|will retry|will try again|"
    r"has not yet been delivered|not yet been delivered|could not send message for past|"
    r"cannot send message for|warning: message|delivery warning|mail delivery warning|"
    r"transient (?:failure|error)|temporary (?:failure|error)|zustellung verzoe?gert|"
    r"noch nicht zugestellt|verzoe?gert"
)
# Boilerplate that MTAs and gateways write into their bounces.
BOUNCE_TEMPLATE = LeftmostSearch(
    re.compile(
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
)
# Failure wording that is not specific to an MTA template.
BOUNCE_WORDS = LeftmostSearch(
    re.compile(
        r"undeliverable|undelivered|was not delivered|wasn't delivered|"
        r"unable to deliver|failed to deliver|could not deliver|couldn't deliver|"
        r"cannot be delivered|delivery (?:has )?failed|delivery failure|"
        r"permanent (?:fatal )?errors?|permanent failure|returned (?:mail|message)|"
        r"non-?delivery|nondeliverable|recipient name is not recognized|"
        r"user unknown|unknown user|no such user|unknown recipient|"
        r"invalid (?:user|recipient|mailbox|address)|"
        r"not a valid (?:user|recipient|mailbox|address)|"
        r"recipient address rejected|mailbox (?:unavailable|is full|full|not found)|full mailbox|"
        r"over quota|quota exceeded|host or domain name not found|"
        r"not listed in (?:domino|the) directory|error transferring to|"
        r"unzustellbar|nicht zugestellt|zustellung (?:ist )?fehlgeschlagen|non remis|宛先不明"
    )
)
# Sentences an MTA opens a bounce with; only checked at the very top of the body.
BOUNCE_OPENING = re.compile(
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
DSN_TEXT_FIELD = re.compile(r"^(?:final-recipient|original-recipient)\s*:", re.I | re.M)

# Subject "heads" (before the first ':' or inside a leading [tag]) of auto-responders.
AUTO_SUBJECT_STRONG = re.compile(
    r"automatic reply|automatic response|automated reply|automated response|"
    r"auto[- ]?repl(?:y|ied)|auto[- ]?respon(?:se|der|s)|auto[- ]?antwort|"
    r"automatische (?:antwort|rue?ckantwort|nachricht)|abwesenheitsnotiz|"
    r"abwesenheitsnachricht|abwesenheitsmeldung|abwesenheitsinfo|out of (?:the )?office|"
    r"out-of-office|reponse automatique|message d'absence|absent du bureau|"
    r"risposta automatica|fuori (?:sede|ufficio)|respuesta automatica|fuera de la oficina|"
    r"resposta automatica|automatisch antwoord|afwezigheidsbericht|automatyczna odpowiedz|"
    r"odpowiedz automatyczna|autosvar|automatiskt svar|automatisk svar|"
    r"automaattinen vastaus|automaticka odpoved|automatikus valasz|otomatik yanit|"
    r"automatiska atbilde|automatine atsakymas|arpus biroja|"
    r"автоматический ответ|автоответ|自动回复|自動回覆|自動応答|自動返信"
)
AUTO_SUBJECT_WEAK = re.compile(
    r"^(?:auto|abwesend|abwesenheit|urlaub|im urlaub|ferien|vacation|on vacation|away|"
    r"absence|absent|on leave|holiday|afwezig|atvalinajums|nieobecnosc|ausente|assente|"
    r"poissa|fravaer|franvaro|ooo|oof|不在)\b"
)
AUTO_SUBJECT_SUFFIX = re.compile(
    r"\((?:automatic response|automatic reply|auto[- ]?reply|auto[- ]?response|"
    r"out of (?:the )?office|abwesenheitsnotiz|automatische antwort|vacation)\)\s*$"
)
EXCHANGE_OOF_HEAD = re.compile(
    r"automatic reply|automatische antwort|abwesenheitsnotiz|out of (?:the )?office|"
    r"reponse automatique|risposta automatica|respuesta automatica|automatisch antwoord|"
    r"automatyczna odpowiedz|arpus biroja"
)
OOO_WORDS = LeftmostSearch(
    re.compile(
        r"out of (?:the )?office|out-of-office|\booo\b|\boof\b|vacation|holiday|on leave|"
        r"away from|abwesen|urlaub|ausser haus|nicht im (?:bue?ro|haus)|absence|absent|"
        r"fuori (?:sede|ufficio)|fuera de la oficina|afwezig|atvalinajums|arpus biroja|"
        r"nieobecn|ausente|poissa|不在"
    )
)
# First-person out-of-office statements.
OOO_BODY = LeftmostSearch(
    re.compile(
        r"\bi(?: am|'m| will be|'ll be| shall be) (?:currently |now |presently )?"
        r"(?:out of (?:the )?office|away|on (?:vacation|holiday|leave|annual leave|"
        r"parental leave|maternity leave|sick leave|business travel)|not in the office|"
        r"out of town|travell?ing|absent|off work)|"
        r"\bout of (?:the )?office (?:until|till|from|through|and will|returning)|"
        r"\bi (?:will|shall) (?:be back|return)|\bback in the office|"
        r"limited access to (?:my )?e-?mail|\bwhile i(?: am|'m) (?:away|out)|upon my return|"
        r"\bich bin (?:vom|von|bis|ab|am|derzeit|zurzeit|zur zeit|momentan|aktuell|leider|"
        r"nicht|ausser|im|in|wieder)\b.{0,80}?(?:nicht im (?:bue?ro|haus|hause)|ausser haus|"
        r"abwesend|im urlaub|urlaub|nicht erreichbar|wieder (?:im bue?ro|erreichbar|da))|"
        r"\b(?:nicht im (?:bue?ro|hause)|ausser haus|abwesend|im urlaub)\b.{0,60}?"
        r"(?:zurue?ck|wieder|erreichbar)|"
        r"\bje suis (?:absent|en conge|en vacances)|\bsono (?:fuori|assente|in ferie)|"
        r"\bestoy (?:fuera|de vacaciones|ausente)|\bik ben (?:afwezig|met vakantie)|"
        r"\bjestem (?:nieobecn|na urlopie)"
    )
)
# Statements that the message was generated automatically.
AUTO_BODY = LeftmostSearch(
    re.compile(
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
)
# Other helpdesks' acknowledgements ("we received your request").
ACK_SUBJECT = re.compile(
    r"(?:your|ihre) (?:request|message|e-?mail|ticket|case|anfrage|nachricht|meldung)"
    r".{0,40}(?:has been|was|is|ist|wurde) (?:received|created|opened|logged|registered|"
    r"eingegangen|erhalten|empfangen|erfasst|registriert|angelegt|eroe?ffnet)|"
    r"we (?:have )?received your|wir haben ihre .{0,30}(?:erhalten|empfangen)|"
    r"(?:request|ticket|case) (?:received|created|opened|logged)|"
    r"eingangsbestae?tigung|empfangsbestae?tigung|auto[- ]?acknowledge?ment|"
    r"acknowledge?ment of (?:receipt|your)|thank you for contacting|"
    r"thank(?:s| you) for your (?:e-?mail|message|request|inquiry|enquiry)|"
    r"(?:vielen )?dank fue?r ihre (?:e-?mail|nachricht|anfrage)"
)
ACK_BODY = LeftmostSearch(
    re.compile(
        r"(?:your|ihre) (?:request|message|e-?mail|ticket|case|anfrage|nachricht|meldung)"
        r".{0,60}(?:has been|was|is|ist|wurde) (?:received|created|opened|logged|registered|"
        r"eingegangen|erhalten|empfangen|erfasst|registriert|angelegt)|"
        r"we (?:have )?received your (?:request|message|e-?mail|inquiry|enquiry)|"
        r"wir haben ihre (?:anfrage|nachricht|e-?mail) (?:erhalten|empfangen)|"
        r"(?:a|your) (?:ticket|request|case) (?:has been|was) (?:created|opened|logged)"
    )
)
# Challenge/response systems ("click the link to get on my allowed list").
CHALLENGE_BODY = LeftmostSearch(
    re.compile(
        r"(?:allowed|approved|white|safe|accepted)[ -]?(?:list|senders)|whitelist|"
        r"verify (?:that )?you are (?:a human|a real person|not a)|"
        r"(?:account|mailbox|address|inbox) is protected by|sender verification|"
        r"challenge[ /-]response|awaiting (?:your )?(?:verification|confirmation)"
    )
)
CHALLENGE_ACTION = LeftmostSearch(
    re.compile(
        r"(?:click|visit|follow|open)(?: on)? (?:the|this)(?: following)? link|"
        r"(?:reply|respond) to this (?:message|e-?mail) to (?:verify|confirm)"
    )
)
RECEIVED_OPENING = re.compile(
    r"^\W*your (?:message|e-?mail)(?: to .{1,120}?)? (?:was|has been) "
    r"(?:received|held|quarantined|blocked)"
)

# What a person asking for help writes; vetoes the phrase-only rules.
HELP_SUBJECT = LeftmostSearch(
    re.compile(
        r"\?|\bhow (?:do|can|to|should|does)\b|\bwie (?:kann|koe?nnen|richte|stelle|aktiviere|"
        r"funktioniert|geht|lae?sst)\b|funktioniert nicht|geht nicht|klappt nicht|"
        r"does ?n[o']t work|do ?n[o']t work|not working|\bproblem|\bfehler|\bfrage\b|"
        r"\bquestion\b|\bhilfe\b|\bhelp\b|\bissue\b|\bbitte\b|\bplease\b|\berror\b"
    )
)
HELP_BODY = LeftmostSearch(
    re.compile(
        r"\bhow (?:do|can|should) (?:i|we)\b|\bwie (?:kann|koe?nnen|richte|stelle) (?:ich|wir)\b|"
        r"funktioniert (?:leider )?nicht|geht (?:leider )?nicht|klappt (?:leider )?nicht|"
        r"does ?n[o']t work|do ?n[o']t work|not working|\bcan you\b|\bcould you\b|"
        r"\bkoe?nnen sie\b|\bkoe?nnten sie\b|\bkannst du\b|please help|bitte helfen"
    )
)
PERSONAL = re.compile(r"\b(?:i|i'm|my|me|we|our|us|ich|mein\w*|wir|unser\w*|mir|uns)\b")
GREETING = re.compile(
    r"^\W*(?:hi|hello|hallo|hey|dear|sehr geehrte[rs]?|guten (?:tag|morgen|abend)|"
    r"liebe[rs]?|servus|moin|grue?ezi|grue?ss gott|bonjour|salut|ciao|buongiorno|hola|"
    r"goedemorgen|goedendag|hej|witam|dzien dobry)\b"
    r"(?![.,!]? (?:this is|user|customer|sender|client|valued|recipient|mail ?user))"
)

# Sender local parts and display names.
DAEMON_LOCAL = re.compile(r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon|mdaemon)$")
DAEMON_NAME = re.compile(
    r"^(?:mail delivery (?:sub)?system|mail deliver system|mailer[- ]daemon|"
    r"mail[- ]daemon|delivery subsystem|mail administrator|mail delivery service)$"
)
POSTMASTER_LOCAL = re.compile(
    r"^(?:postmaster|post[-_.]?master|poostmaster|mail[-_.]?delivery[-_.]?system|"
    r"system ?administrator|mail[-_.]?delivery|mailadmin|mail[-_.]?admin|"
    r"(?:smtp|mail|e500_smtp)_?mail_?service|mmsc|mailer|bounces?|"
    r".*_antivirus_.*|imss|mailsweeper|mailscanner)$"
)
SYSTEM_NAME = re.compile(
    r"system administrator|postmaster|mail ?server|delivery|mailer|administrator|"
    r"antivirus|virus ?wall|mmsc|ndr"
)
NOREPLY_LOCAL = re.compile(
    r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|noreply|no[-_.]?response|"
    r"notifications?|notify|auto[-_.]?reply|autoresponder|automailer|system|daemon)"
    r"(?:[-_.+].*)?$"
)
LIST_ADMIN_LOCAL = re.compile(
    r"(?:-admin|-owner|-bounces?|-request|-errors|-approval)(?:\+.*)?$|^owner-"
)
LIST_REJECTION = re.compile(
    r"not (?:a )?member|non-?member|not (?:allowed|permitted|authori[sz]ed) to post|"
    r"posting (?:is )?(?:restricted|rejected|denied)|loop alert|duplicated message-id|"
    r"message (?:has been |was )?rejected|your message .{0,40}(?:was|has been) rejected"
)

LIST_HEADERS = (
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
AUTOREPLY_HEADERS = (
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
TICKET_MARKER_HEADERS = (
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
TICKET_MAILER = re.compile(
    r"\b(?:otrs|otobo|znuny|zammad|request tracker|rt/\d|jira|zendesk|freshdesk|osticket|"
    r"kayako|servicenow|spiceworks|help ?scout|glpi|itop|redmine|mantis|bugzilla|"
    r"helpdesk|help desk|ticket)\b"
)
FALSY = frozenset({"no", "false", "0", "off", "none"})

STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
SMTP_STATUS_RE = re.compile(r"(?<![\d.])[245]\d\d[ -]#?([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)")
HASH_STATUS_RE = re.compile(r"#([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)")
FIELD_STATUS_RE = re.compile(r"status:?\s*([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)", re.I)
SMTP_CODE_RE = re.compile(r"(?<![\w.:/-])([45])[0-5]\d(?:[ -](?=[a-z#<(\[]|[45]\.\d))", re.I)
ADDR_LINE = re.compile(r"^\s*<([^<>\s@]{1,100}@[^<>\s@]{1,200})>\s*:", re.M)
ADDR_RE = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]{1,100}@[\w-]+(?:\.[\w-]+)+")
