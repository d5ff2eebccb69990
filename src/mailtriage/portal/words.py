"""The words of the customer pages, German and English (pure).

Status and level are told in plain words, as a customer would ask: "is anyone on it?"
"""

from __future__ import annotations

__all__ = ["LANGUAGES", "choose_language", "level_words", "status_words", "words"]

LANGUAGES = ("de", "en")

_STATUS = {
    "de": {
        "new": "Eingegangen: wir haben Ihre Anfrage erhalten",
        "open": "In Bearbeitung",
        "waiting": "Wir warten auf Ihre Antwort",
        "resolved": "Gelöst",
        "closed": "Abgeschlossen",
    },
    "en": {
        "new": "Received: we have your request",
        "open": "Being worked on",
        "waiting": "Waiting for your answer",
        "resolved": "Solved",
        "closed": "Closed",
    },
}

_LEVEL = {
    "de": {
        "L1": "Unser Support-Team (erste Ebene) kümmert sich darum.",
        "L2": "Unsere Spezialisten (zweite Ebene) sind dran.",
        "L3": "Unsere Entwicklung (dritte Ebene) ist dran.",
    },
    "en": {
        "L1": "Our support team (first level) is looking after it.",
        "L2": "Our specialists (second level) are on it.",
        "L3": "Our developers (third level) are on it.",
    },
}

_WORDS = {
    "de": {
        "title": "Ihre Anfrage",
        "status": "Status",
        "level": "Wer ist dran",
        "response_due": "Antwort zugesagt bis",
        "answered_at": "Erste Antwort",
        "solution_due": "Lösung angestrebt bis",
        "conversation": "Verlauf",
        "you": "Sie",
        "us": "Data & More Support",
        "attachments": "Anhänge",
        "no_messages": "Noch keine Nachrichten.",
        "feedback": "Wie zufrieden sind Sie mit unserer Hilfe?",
        "feedback_hint": "1 = gar nicht, 5 = sehr zufrieden",
        "comment": "Kommentar (freiwillig)",
        "send": "Absenden",
        "thanks": "Danke für Ihre Bewertung!",
        "your_rating": "Ihre Bewertung",
        "change_rating": "Sie können Ihre Bewertung noch ändern.",
        "too_late": "Die Bewertung kann nicht mehr geändert werden.",
        "not_resolved": "Eine Bewertung ist möglich, sobald die Anfrage gelöst ist.",
        "bad_form": "Das Formular war ungültig oder veraltet. Bitte erneut versuchen.",
        "invalid_title": "Dieser Link ist ungültig",
        "invalid_text": "Der Link ist unvollständig oder gehört nicht zu dieser Seite.",
        "expired_title": "Dieser Link ist abgelaufen",
        "expired_text": "Aus Sicherheitsgründen gelten Links nur eine begrenzte Zeit.",
        "renew": "Neuen Link an meine Adresse senden",
        "renew_sent": "Wenn die Adresse berechtigt ist, ist ein neuer Link unterwegs.",
        "ask_link": "Einen Anmeldelink anfordern",
        "signin_title": "Tickets Ihrer Organisation",
        "signin_text": (
            "Geben Sie Ihre E-Mail-Adresse ein. Ist sie für die Ticketübersicht Ihrer "
            "Organisation freigeschaltet, senden wir Ihnen einen Anmeldelink."
        ),
        "address": "E-Mail-Adresse",
        "signin_sent": (
            "Danke. Wenn die Adresse freigeschaltet ist, erhalten Sie in Kürze eine E-Mail "
            "mit einem Link, der 30 Minuten gilt."
        ),
        "org_title": "Tickets von",
        "reference": "Ticket",
        "subject": "Betreff",
        "last_update": "Letzte Änderung",
        "due": "Nächste Frist",
        "automatic": "Automatische Nachricht",
        "no_tickets": "Keine Tickets.",
        "language": "English",
        "created": "Eröffnet",
    },
    "en": {
        "title": "Your request",
        "status": "Status",
        "level": "Who is on it",
        "response_due": "Answer promised by",
        "answered_at": "First answer",
        "solution_due": "Solution aimed for by",
        "conversation": "Conversation",
        "you": "You",
        "us": "Data & More Support",
        "attachments": "Attachments",
        "no_messages": "No messages yet.",
        "feedback": "How satisfied are you with our help?",
        "feedback_hint": "1 = not at all, 5 = very satisfied",
        "comment": "Comment (optional)",
        "send": "Send",
        "thanks": "Thank you for your rating!",
        "your_rating": "Your rating",
        "change_rating": "You can still change your rating.",
        "too_late": "The rating can no longer be changed.",
        "not_resolved": "You can rate our help once the request is solved.",
        "bad_form": "The form was invalid or out of date. Please try again.",
        "invalid_title": "This link is not valid",
        "invalid_text": "The link is incomplete or does not belong to this page.",
        "expired_title": "This link has expired",
        "expired_text": "For your security, links are valid for a limited time only.",
        "renew": "Send a new link to my address",
        "renew_sent": "If the address may see this page, a new link is on its way.",
        "ask_link": "Ask for a sign-in link",
        "signin_title": "Your organisation's tickets",
        "signin_text": (
            "Enter your email address. If it may see your organisation's tickets, we "
            "send you a sign-in link."
        ),
        "address": "Email address",
        "signin_sent": (
            "Thank you. If the address may sign in, you will shortly get an email with a "
            "link that is valid for 30 minutes."
        ),
        "org_title": "Tickets of",
        "reference": "Ticket",
        "subject": "Subject",
        "last_update": "Last update",
        "due": "Next due",
        "automatic": "Automatic message",
        "no_tickets": "No tickets.",
        "language": "Deutsch",
        "created": "Opened",
    },
}


def choose_language(asked: str | None, ticket_language: str | None, default: str) -> str:
    """``?lang=`` if it is one we have, else the ticket's language, else ``default``."""
    for candidate in (asked, ticket_language, default):
        if candidate in LANGUAGES:
            return str(candidate)
    return "en"


def words(language: str) -> dict[str, str]:
    return _WORDS[language if language in _WORDS else "en"]


def status_words(status: str, language: str) -> str:
    return _STATUS.get(language, _STATUS["en"]).get(status, status)


def level_words(level: str | None, language: str) -> str:
    table = _LEVEL.get(language, _LEVEL["en"])
    return table.get(level or "L1", table["L1"])
