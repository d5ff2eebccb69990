"""Authentication-Results (RFC 8601) and whether a mail really comes from an agent (pure).

**Which header counts.** Anyone can write an ``Authentication-Results`` header into the
mail they send, with any authserv-id, ours included. Our receiving (border) server adds
its own header *above* everything the message arrived with, so its header is the
topmost one. The rule: **only the topmost Authentication-Results header counts, and
only when its authserv-id is in the trusted set.** A header below it, whatever id it
claims, was there before our server saw the mail and is ignored; a topmost header with
another id means our server did not (or not last) judge the mail, and nothing counts.
Consequences:

* the receiving server must write all its results (DKIM, SPF, DMARC) into one header,
  as rspamd, OpenDMARC with ``SPFSelfValidate``, Gmail and most gateways do; a setup
  where separate milters add one header each is only judged by the topmost of them
  (that fails closed: the agent's commands are refused, never wrongly accepted);
* mailtriage must receive mail only through that server (RFC 8601 section 5 asks the
  border server to remove headers that claim its id anyway; this rule does not rely
  on it);
* ``ARC-Authentication-Results`` and Exchange Online's header without an authserv-id
  never count.

**Parsing.** Comments (nested, with escapes) are removed, quoted strings are read as
values (a ``;`` or ``(`` inside one is text), results are separated by ``;``. A result
that cannot be read completely is dropped; unknown ``key=value`` words without a
``ptype.`` (Exchange's ``action=none``) are skipped. We chose a small parser over the
``authres`` package: its last release is from 2019 and we need only this part.

**Alignment** (relaxed, in a form that needs no public-suffix list): the authenticated
domain is the agent's domain, or one of the two is a subdomain of the other and the
shorter has at least two labels: ``mail.dataandmore.com`` aligns with
``dataandmore.com``; ``dataandmore.com.evil.example``, ``evil-dataandmore.com`` and
sibling subdomains (``eu.x.com`` vs ``us.x.com``) do not. An agent counts as
authenticated with DKIM ``pass`` whose ``header.d`` (else the domain of ``header.i``)
aligns with the agent's address, or SPF ``pass`` whose ``smtp.mailfrom`` domain aligns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "AuthResults",
    "MethodResult",
    "agent_authenticated",
    "aligned",
    "parse_authentication_results",
]

_KEYWORD = r"[A-Za-z0-9][A-Za-z0-9_-]*"
_VALUE = r'"(?:[^"\\]|\\.)*"|[^\s";]+'
_METHOD_RE = re.compile(rf"\s*({_KEYWORD})(?:\s*/\s*[0-9]+)?\s*=\s*({_KEYWORD})")
_REASON_RE = re.compile(rf"\s+reason\s*=\s*({_VALUE})", re.IGNORECASE)
_PROP_RE = re.compile(rf"\s+({_KEYWORD})\s*\.\s*({_KEYWORD})\s*=\s*({_VALUE})")
_OTHER_RE = re.compile(rf"\s+{_KEYWORD}\s*=\s*(?:{_VALUE})")
_AUTHSERV_RE = re.compile(rf"\s*({_VALUE})(?:\s+[0-9]+)?\s*")
_DOMAIN_RE = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")


@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` with its reason and ``ptype.property=value`` pairs."""

    method: str  # lower case: "dkim", "spf", "dmarc", ...
    result: str  # lower case: "pass", "fail", "softfail", ...
    reason: str = ""
    properties: tuple[tuple[str, str], ...] = ()  # ("header.d", "example.com"), ...

    def get(self, name: str) -> str | None:
        """The first value of property ``name`` (e.g. ``"header.d"``), or None."""
        return next((v for k, v in self.properties if k == name), None)


@dataclass(frozen=True)
class AuthResults:
    authserv_id: str  # lower case
    results: tuple[MethodResult, ...]


def parse_authentication_results(value: str) -> AuthResults | None:
    """One header value, parsed; None when it has no readable authserv-id."""
    text = _strip_comments(value)
    if text is None:
        return None
    head, *parts = _split_outside_quotes(text)
    match = _AUTHSERV_RE.fullmatch(head)
    if not match or "=" in match.group(1):  # "spf=pass ..." is a result, not an id
        return None
    results = []
    for part in parts:
        result = _parse_result(part)
        if result is not None:
            results.append(result)
    return AuthResults(_unquote(match.group(1)).lower(), tuple(results))


def _parse_result(part: str) -> MethodResult | None:
    part = part.rstrip()
    match = _METHOD_RE.match(part)
    if not match:
        return None
    pos = match.end()
    reason = ""
    properties = []
    while pos < len(part):
        if m := _REASON_RE.match(part, pos):
            reason = _unquote(m.group(1))
        elif m := _PROP_RE.match(part, pos):
            name = f"{m.group(1).lower()}.{m.group(2).lower()}"
            properties.append((name, _unquote(m.group(3))))
        elif m := _OTHER_RE.match(part, pos):
            pass  # not RFC 8601 (e.g. Exchange's "action=none"): skipped
        else:
            return None  # unreadable: the whole result is dropped
        pos = m.end()
    return MethodResult(match.group(1).lower(), match.group(2).lower(), reason, tuple(properties))


def _strip_comments(value: str) -> str | None:
    """The value with (nested) comments replaced by a space; None if unbalanced."""
    out = []
    depth = 0
    quoted = False
    chars = iter(value.replace("\r", " ").replace("\n", " ").replace("\t", " "))
    for ch in chars:
        if ch == "\\" and (quoted or depth):
            escaped = next(chars, "")
            if quoted:
                out.append(ch + escaped)
            continue
        if quoted:
            out.append(ch)
            quoted = ch != '"'
        elif ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return None
            depth -= 1
            if depth == 0:
                out.append(" ")
        elif depth == 0:
            out.append(ch)
            quoted = ch == '"'
    return None if depth or quoted else "".join(out)


def _split_outside_quotes(text: str) -> list[str]:
    """``text`` split at each ``;`` that is not inside a quoted string."""
    out: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            out.append("".join(current))
            current = []
            continue
        current.append(ch)
    out.append("".join(current))
    return out


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _domain(value: str | None) -> str | None:
    """The lower-case ASCII domain of ``user@domain``, ``@domain`` or ``domain``."""
    if not value:
        return None
    domain = value.strip().rpartition("@")[2].rstrip(".").lower()
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return domain if _DOMAIN_RE.fullmatch(domain) else None


def aligned(authenticated: str | None, agent_domain: str | None) -> bool:
    """Relaxed alignment without a public-suffix list (see the module docstring)."""
    a, b = _domain(authenticated), _domain(agent_domain)
    if not a or not b:
        return False
    if a == b:
        return True
    shorter, longer = sorted((a, b), key=len)
    return longer.endswith("." + shorter) and shorter.count(".") >= 1


def agent_authenticated(
    headers: Sequence[str], trusted_authserv_ids: Iterable[str], agent_address: str
) -> tuple[bool, str]:
    """(authenticated, reason) for a mail from ``agent_address``.

    ``headers``: the values of the message's Authentication-Results headers in message
    order, topmost first (``msg.get_all("Authentication-Results")``).
    """
    trusted = {t.strip().lower() for t in trusted_authserv_ids if t.strip()}
    agent_domain = _domain(agent_address.strip().strip("<>")) if "@" in agent_address else None
    if not trusted:
        return False, "no trusted authserv-id configured (security.authserv_ids)"
    if agent_domain is None:
        return False, f"agent address {agent_address!r} has no usable domain"
    if not headers:
        return False, "no Authentication-Results header"
    top = parse_authentication_results(headers[0])
    if top is None:
        return False, "topmost Authentication-Results header is unreadable"
    if top.authserv_id not in trusted:
        return False, f"topmost Authentication-Results is from {top.authserv_id!r}, not trusted"
    seen = []
    for result in top.results:
        if result.method == "dkim":
            domain = result.get("header.d") or result.get("header.i")
        elif result.method == "spf":
            domain = result.get("smtp.mailfrom")
        else:
            continue
        seen.append(f"{result.method}={result.result} {domain or '(no domain)'}")
        if result.result == "pass" and aligned(domain, agent_domain):
            return True, f"{result.method}=pass for {_domain(domain)} ({top.authserv_id})"
    found = ", ".join(seen) or "no dkim or spf result"
    return False, f"no aligned dkim or spf pass for {agent_domain} ({top.authserv_id}: {found})"
