"""The rules that read billing terms out of a statement of work or change order (pure Python, no Django).

`extract(text, roles=..., hours_per_day=...)` answers `Term`s: payment terms, a fee cap, hourly rates per
role, the billing frequency and a PO number, each with the sentence it came from and a confidence.
docs/rules/assistive.md explains what is read and why a person still decides; in short:

- the text is cut into *sentences* (prose) and *rows* (tables: cells split on pipes, tabs, runs of
  spaces, dot leaders); a table's header row gives its columns a unit (per hour / per day) and a currency;
- amounts are read in Anglo and European notation ("1,450.00", "1.450,00", "1 450", "1'450", "1.2 million"),
  with a currency code, sign or word next to them (or the one the table or document uses);
- numbers written in words are read ("forty-five (45) days", "thirty days");
- each field has its wording (cap: "not to exceed", "ceiling of", "maximum budget", "in no event shall
  total charges exceed" …) and its distractors (liability caps, interest, expenses and per diems,
  dispute and notice windows, ".NET 8");
- amendments: in "from X to Y", "X is replaced by Y", "increased to Y", "previously X" the new value wins and
  the superseded one is kept as context; a later amendment in the document wins over an earlier statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

PAYMENT_TERMS = "payment_terms_days"
RATE = "rate"
CAP = "cap"
PO_NUMBER = "po_number"
FREQUENCY = "billing_frequency"

CURRENCY_SIGNS = {"€": "EUR", "$": "USD", "£": "GBP", "US$": "USD"}
CURRENCY_WORDS = {
    "euro": "EUR",
    "euros": "EUR",
    "us dollars": "USD",
    "u.s. dollars": "USD",
    "dollars": "USD",
    "pounds sterling": "GBP",
    "pounds": "GBP",
    "sterling": "GBP",
    "swiss francs": "CHF",
    "francs": "CHF",
}
CODES = ("EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "CAD", "AUD", "JPY")

# --- numbers ---------------------------------------------------------------------------------------------

_UNITS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ]
    )
}
_TENS = {
    w: 10 * (i + 2)
    for i, w in enumerate(["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"])
}
_NUMBER_WORD = "|".join(sorted([*_UNITS, *_TENS, "hundred"], key=len, reverse=True))
_WORDS_RE = re.compile(rf"\b(?:{_NUMBER_WORD})(?:(?:[\s-]+|\s+and\s+)(?:{_NUMBER_WORD}))*\b", re.I)


def words_to_int(words: str) -> int | None:
    """'forty-five' → 45, 'one hundred and twenty' → 120 (0–999)."""
    total, current = 0, 0
    for word in re.split(r"[\s-]+", words.lower()):
        if word == "and" or not word:
            continue
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = (current or 1) * 100
        else:
            return None
    return total + current


def normalise_numbers(text: str) -> str:
    """'forty-five (45) days' → '45 days'; 'thirty days' → '30 days' (words only before a time unit)."""

    def with_digits(m: re.Match) -> str:
        return m.group(2)

    text = re.sub(
        rf"\b((?:{_NUMBER_WORD})(?:[\s-]+(?:and\s+)?(?:{_NUMBER_WORD}))*)\s*\((\d{{1,4}})\)",
        with_digits,
        text,
        flags=re.I,
    )

    def spelled(m: re.Match) -> str:
        value = words_to_int(m.group(1))
        return f"{value}{m.group(2)}" if value is not None else m.group(0)

    return re.sub(
        rf"\b((?:{_NUMBER_WORD})(?:[\s-]+(?:and\s+)?(?:{_NUMBER_WORD}))*)(\s+(?:calendar\s+|business\s+|"
        r"working\s+)?(?:days?|months?|hours?)\b)",
        spelled,
        text,
        flags=re.I,
    )


def parse_amount(text: str) -> Decimal | None:
    """'1,450' '1.450,00' '250,000.00' "1'450" '1 450' '1,5' → Decimal (None: not a number)."""
    s = re.sub(r"[\s'’\u00a0\u202f]", "", text)
    if "," in s and "." in s:
        s = s.replace(",", "") if s.rfind(".") > s.rfind(",") else s.replace(".", "").replace(",", ".")
    elif "," in s:
        s = s.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+", s) else s.replace(",", ".")
    elif re.fullmatch(r"\d{1,3}(\.\d{3})+", s):
        s = s.replace(".", "")
    try:
        return Decimal(s)
    except InvalidOperation:
        return None


_CCY = r"(?:EUR|USD|GBP|CHF|SEK|NOK|DKK|PLN|CZK|CAD|AUD|JPY|US\$|€|\$|£)"
_CCY_WORD = r"(?:euros?|(?:u\.?s\.?\s+)?dollars|pounds(?:\s+sterling)?|sterling|swiss\s+francs|francs)"
_NUM = r"\d{1,3}(?:[,.'’\u00a0\u202f ]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
_SCALE = r"(?:\s?(?P<scale>million|mio\.?|m|k|thousand)\b)?"
MONEY_RE = re.compile(
    rf"(?:(?P<ccy>{_CCY})\s?(?P<amt>{_NUM}){_SCALE}"
    rf"|(?P<amt2>{_NUM}){_SCALE.replace('scale', 'scale2')}\s?(?:(?P<ccy2>{_CCY})(?![A-Za-z])|(?P<word>{_CCY_WORD})\b)"
    rf"|(?<![\w.,])(?P<bare>{_NUM})(?![\w%]|[.,]\d))",
    re.I,
)


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str  # "" when the text gives none
    start: int
    end: int


def find_money(text: str, *, bare: bool = False) -> list[Money]:
    """Amounts with a currency in `text` (and, with `bare`, plain numbers without one: table cells)."""
    out = []
    for m in MONEY_RE.finditer(text):
        if m.group("bare") is not None:
            if not bare:
                continue
            amount = parse_amount(m.group("bare"))
            ccy = ""
        else:
            amount = parse_amount(m.group("amt") or m.group("amt2") or "")
            raw = (m.group("ccy") or m.group("ccy2") or "").upper()
            ccy = (
                CURRENCY_SIGNS.get(raw, raw)
                if raw
                else CURRENCY_WORDS.get(re.sub(r"\s+", " ", (m.group("word") or "").lower()), "")
            )
            scale = (m.group("scale") or m.group("scale2") or "").lower().rstrip(".")
            if amount is not None and scale:
                amount *= Decimal(1_000_000 if scale in ("million", "mio", "m") else 1000)
        if amount is None or amount <= 0:
            continue
        out.append(Money(amount, ccy, m.start(), m.end()))
    return out


# --- text into sentences and table rows -----------------------------------------------------------------

_CELL_SPLIT = re.compile(r"\s*\|\s*|\t+|\s{2,}|\s*(?:\.\s?){3,}\s*|\s*…+\s*")


@dataclass
class Piece:
    """A sentence, or a table row with its cells and the header it sits under."""

    text: str
    index: int
    cells: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    table_note: str = ""


def _clean(line: str) -> str:
    line = line.replace("\u00a0", " ").replace("\u2013", "-").replace("\u2014", "-").replace("\u2011", "-")
    return line.replace("’", "'").replace("“", '"').replace("”", '"').rstrip()


def _is_row(line: str) -> bool:
    if re.fullmatch(r"\s*\|?[\s:|+-]+\|?\s*", line) and "-" in line:
        return False
    return bool(re.search(r"\||\t|\S\s{2,}\S|\.{4,}|…", line.strip()))


def _cells(line: str) -> list[str]:
    return [c.strip(" |:") for c in _CELL_SPLIT.split(line.strip().strip("|")) if c.strip(" |:")]


def _is_header(cells: list[str]) -> bool:
    joined = " ".join(cells).lower()
    return not find_money(joined, bare=True) and bool(
        re.search(
            r"\b(rate|role|grade|level|hourly|daily|per hour|per day|fee|price|category|position|title|was|now|"
            r"old|new|previous|current|revised|amended|term|item|description|milestone|amount)s?\b",
            joined,
        )
    )


_OLD_COLUMN = re.compile(r"^(?:was|old|previous(?:ly)?|current|existing|original|before|from)\b", re.I)
_NEW_COLUMN = re.compile(r"^(?:now|new|revised|amended|after|to|changed\s+to|updated)\b", re.I)


def _amendment_row(cells: list[str], header: list[str]) -> str:
    """A row of a "Term | Was | Now" table as a sentence: "Term changed from <was> to <now>"."""
    if len(header) != len(cells):
        return ""
    old = next((i for i, h in enumerate(header) if _OLD_COLUMN.search(h)), None)
    new = next((i for i, h in enumerate(header) if _NEW_COLUMN.search(h)), None)
    if old is None or new is None:
        return ""
    label = " ".join(c for i, c in enumerate(cells) if i not in (old, new))
    return f"{label} is changed from {cells[old]} to {cells[new]}."


def pieces(text: str) -> list[Piece]:
    """Prose as sentences (wrapped lines joined), tables as rows with their header and the note beneath."""
    lines = [_clean(line) for line in text.replace("\r", "").split("\n")]
    out: list[Piece] = []
    prose: list[str] = []
    header: list[str] = []
    rows_since_header = 0

    def flush() -> None:
        if not prose:
            return
        block = ""
        previous_length = 0
        for raw in prose:
            bullet = bool(re.match(r"\s*(?:[-•*·]|\(?[a-z0-9]{1,3}[.)])\s+", raw))
            part = re.sub(r"\s+", " ", raw).strip(" \t•*·")
            part = re.sub(r"^[-–]\s+", "", part)
            if not part:
                continue
            wrapped = (
                block
                and not re.search(r"[.;:!?]$", block)
                and not bullet
                and (part[:1].islower() or previous_length >= 45)
            )
            if wrapped:
                block += " " + part
            else:
                if block:
                    _sentences(block, out)
                block = part
            previous_length = len(raw.strip())
        if block:
            _sentences(block, out)
        prose.clear()

    for line in lines:
        if not line.strip():
            flush()
            continue
        if _is_row(line) and len(_cells(line)) >= 2:
            flush()
            cells = _cells(line)
            if _is_header(cells):
                header, rows_since_header = cells, 0
                continue
            rows_since_header += 1
            amended = _amendment_row(cells, header)
            if amended:
                out.append(Piece(amended, len(out)))
            else:
                out.append(Piece(re.sub(r"\s+", " ", " ".join(cells)), len(out), cells, header))
            continue
        if re.fullmatch(r"\s*\|?[\s:|+-]+\|?\s*", line):
            continue
        if header and rows_since_header and not re.match(r"\s*[-•*]", line):
            header, rows_since_header = [], 0
        prose.append(line)
    flush()
    # a note under a table ("All rates are per day, excluding VAT") gives the rows above it their unit
    for i, piece in enumerate(out):
        if piece.cells:
            continue
        if re.search(
            r"\b(rates?|fees?|prices?|amounts?)\b.*\b(per|an?|each)\s+(hour|day|person[- ]day)\b|"
            r"\b(hourly|daily|day)\s+rates?\b",
            piece.text,
            re.I,
        ):
            for row in out[i + 1 :]:  # a heading over the table
                if not row.cells:
                    break
                row.table_note = piece.text
            for row in out[max(0, i - 15) : i]:  # a note beneath it
                if row.cells and not row.table_note:
                    row.table_note = piece.text
    return out


def _sentences(block: str, out: list[Piece]) -> None:
    for s in re.split(r"(?<=[.!?])\s+(?=[A-Z(\"'])|(?<=:)\s+(?=[-•]\s)", block):
        s = s.strip()
        if s:
            out.append(Piece(s, len(out)))


# --- roles -----------------------------------------------------------------------------------------------

# Titles a firm calls its roles by, mapped to the usual grade; a firm adds its own (RoleSynonym).
BUILTIN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "partner": ("partner", "principal", "director", "engagement partner", "managing director", "practice lead"),
    "senior consultant": (
        "senior consultant",
        "senior",
        "manager",
        "senior associate",
        "lead consultant",
        "senior manager",
        "engagement manager",
        "project manager",
    ),
    "consultant": ("consultant", "associate", "developer", "engineer", "specialist"),
    "analyst": ("analyst", "business analyst", "junior consultant", "junior analyst", "graduate", "trainee", "intern"),
}

_ROLE_NOUN = (
    r"partner|principal|director|manager|consultant|analyst|associate|architect|engineer|developer|"
    r"specialist|scientist|lead|expert|advisor|adviser|designer|tester|administrator|officer|"
    r"coordinator|trainee|intern|graduate|head|owner|master|auditor|accountant|lawyer|counsel"
)
_ROLE_PHRASE = re.compile(rf"\b((?:[A-Z][\w/&-]*\s+){{0,3}}(?:{_ROLE_NOUN})s?)\b", re.I)


@dataclass(frozen=True)
class RoleBook:
    """Phrase → role code: the firm's role codes and names, their plurals, and synonyms."""

    phrases: dict[str, str]

    @classmethod
    def build(cls, roles: Iterable[tuple[str, str]], synonyms: Iterable[tuple[str, str]] = ()) -> RoleBook:
        phrases: dict[str, str] = {}
        by_name: dict[str, str] = {}
        for code, name in roles:
            for p in (code, code.replace("_", " "), name):
                if p:
                    phrases[p.lower()] = code
            if name:
                by_name[name.lower()] = code
        for grade, words in BUILTIN_SYNONYMS.items():  # only onto roles the firm has, never over its own words
            code = by_name.get(grade) or phrases.get(grade)
            if code:
                for w in words:
                    phrases.setdefault(w, code)
        for phrase, code in synonyms:  # the firm's own synonyms win
            phrases[phrase.lower().strip()] = code
        return cls(phrases)

    def code(self, text: str) -> str:
        wanted = re.sub(r"[^a-z0-9 &/_-]", "", re.sub(r"\s+", " ", text.lower())).strip()
        for candidate in (wanted, re.sub(r"s$", "", wanted), re.sub(r"(?<=s)es$", "", wanted)):
            if candidate in self.phrases:
                return self.phrases[candidate]
        # longest known phrase at the end of the text ("the Senior Consultant" → SENIOR)
        best = ""
        for phrase in self.phrases:
            if len(phrase) > len(best) and re.search(rf"(?:^|\s){re.escape(phrase)}s?$", wanted):
                best = phrase
        return self.phrases.get(best, "")

    def mentions(self, text: str) -> list[tuple[int, int, str, str]]:
        """(start, end, text, code) of the role names in a sentence (known phrases, then generic titles)."""
        spans: list[tuple[int, int, str, str]] = []
        for phrase in sorted(self.phrases, key=len, reverse=True):
            if len(phrase) < 3:
                continue
            for m in re.finditer(rf"\b{re.escape(phrase)}(?:e?s)?\b", text, re.I):
                if any(s <= m.start() < e or s < m.end() <= e for s, e, _, _ in spans):
                    continue
                if (
                    phrase.isupper() is False
                    and text[m.start() : m.end()].islower()
                    and len(phrase) <= 6
                    and phrase not in ("partner", "analyst", "senior")
                ):
                    pass
                spans.append((m.start(), m.end(), m.group(0), self.phrases[phrase]))
        for m in _ROLE_PHRASE.finditer(text):
            if any(s < m.end() and m.start() < e for s, e, _, _ in spans):
                continue
            words = m.group(1).split()
            while words and not words[0][:1].isupper():
                words.pop(0)
            if not words:
                continue
            phrase = " ".join(words)
            start = m.end() - len(phrase)
            spans.append((start, m.end(), phrase, self.code(phrase)))
        return sorted(spans)


# --- results ---------------------------------------------------------------------------------------------


@dataclass
class Term:
    field: str
    value: str
    sentence: str
    confidence: Decimal
    role_code: str = ""
    role_text: str = ""
    note: str = ""
    supersedes: str = ""
    position: int = 0
    superseded: bool = False

    def as_json(self) -> dict:
        out = {
            "field": self.field,
            "value": self.value,
            "confidence": float(self.confidence),
            "role_code": self.role_code,
            "sentence": self.sentence,
        }
        if self.role_text and not self.role_code:
            out["role_text"] = self.role_text
        if self.supersedes:
            out["supersedes"] = self.supersedes
        if self.note:
            out["note"] = self.note
        return out


_OLD_BEFORE = re.compile(
    r"(?:\bfrom|\bpreviously|\bformerly|\boriginally|\boriginal(?:ly)?\s+[\w\s-]{0,30}?(?:of|was|at)?|\bwas|"
    r"\binstead\s+of|\bin\s+place\s+of|\breplac(?:ing|es)|\bsupersedes|\bno\s+longer|\bcurrent(?:ly)?|\bexisting\s+[\w\s-]{0,20}?of|"
    r"\bprior|\bold|\bsupersed\w*)\s*[:\w\s()-]{0,25}$",
    re.I,
)
_NEW_BEFORE = re.compile(
    r"(?:\bto(?![\s-]*exceed)|\bnow|\bnew|\breplaced\s+(?:by|with)|\bamended\s+to|\brevised|\bincreased\s+to|\breduced\s+to|"
    r"\bbecomes?|\bchanged\s+to|\bextended\s+to)\s*[:\w\s()-]{0,25}$",
    re.I,
)
_AMENDING = re.compile(
    r"\b(?:from|previously|formerly|replac\w+|amend\w*|supersed\w+|increas\w+|reduc\w+|"
    r"chang\w+|revis\w+|instead)\b",
    re.I,
)


def _is_old(sentence: str, start: int) -> bool:
    """Is the value at `start` the superseded one of an amendment ("from X to Y", "X is replaced by Y")?"""
    if not _AMENDING.search(sentence):
        return False
    before = sentence[max(0, start - 45) : start]
    new = _NEW_BEFORE.search(before)
    old = _OLD_BEFORE.search(before)
    if old and (not new or old.start() > new.start()):
        return True
    after = sentence[start : start + 80]
    return (
        bool(
            re.search(
                r"^[^.;]{0,50}?\b(?:is|are|shall\s+be|will\s+be|has\s+been|have\s+been)\s+"
                r"(?:hereby\s+)?(?:replaced|superseded|increased|reduced|amended|changed|deleted|"
                r"revised|extended)\b",
                after,
                re.I,
            )
        )
        and not new
    )


# --- payment terms ---------------------------------------------------------------------------------------

_PAY_WORDS = re.compile(r"\b(pa(?:y|id|yable|yment)s?|due|remit\w*|settle\w*|net|invoices?)\b", re.I)
_NOT_PAYMENT = re.compile(
    r"\b(disput\w*|contest\w*|query|queries|object\w*|notif\w*|notice|terminat\w*|cancel\w*|warrant\w*|"
    r"retain\w*|retention|accept\w*\s+(?:or\s+reject\s+)?(?:the\s+)?(?:deliverables?|work)|review\w*|"
    r"interest|late\s+payment\s+(?:fee|charge)|expir\w*|valid\w*|deliver(?:y|ed)|respond|response|cure|"
    r"remed\w*|approv\w+|submit\w*|timesheets?)\b",
    re.I,
)


def _payment_terms(piece: Piece) -> list[Term]:
    s = piece.text
    out = []
    for m in re.finditer(r"(?<![.\w])net\s*(\d{1,3})\b(?!\s*%|\.\d)", s, re.I):
        if re.search(r"\.\s*$", s[: m.start()]) or re.search(r"(asp|vb|dot)\s*$", s[: m.start()], re.I):
            continue
        if re.search(r"\bnet\s*\d+\s*(?:framework|core|runtime|sdk|version)", s[m.start() : m.end() + 12], re.I):
            continue
        after = s[m.end() : m.end() + 12]
        if re.match(r"\s*(?:%|percent|\.\d)", after):
            continue
        expected_after = r"\s*(?:days?)?\s*$|\s*(?:days?\b|\(|,|\.|;|from|after|of|following|eom|end)"
        if re.match(expected_after, after + " ") is None and not re.search(
            r"\b(terms?|payment|paid|payable|due|invoice)", s, re.I
        ):
            continue
        out.append(
            Term(PAYMENT_TERMS, m.group(1), s, Decimal("0.92"), position=piece.index, superseded=_is_old(s, m.start()))
        )
    for m in re.finditer(r"\b(\d{1,3})\s*(?:calendar\s+|business\s+|working\s+)?days?(?:'|’)?\s*(net\b)?", s, re.I):
        days = int(m.group(1))
        if not 0 < days <= 180:
            continue
        clause_start = max(
            [
                0,
                *[
                    x.end()
                    for x in re.finditer(
                        r"[;]|,\s*(?:and|but|or|unless|provided)\b|"
                        r"\b(?:unless|provided\s+that|if|otherwise)\b",
                        s[: m.start()],
                    )
                ],
            ]
        )
        clause_end_m = re.search(
            r"[;]|,\s*(?:and|but|or|unless|failing)\b|\b(?:unless|failing|otherwise)\b", s[m.end() :]
        )
        clause = s[clause_start : m.end() + (clause_end_m.start() if clause_end_m else len(s))]
        previous_days = [
            x.end() for x in re.finditer(r"\b\d{1,3}\s*(?:calendar\s+|business\s+|working\s+)?days?\b", s[: m.start()])
        ]
        window_before = s[max([clause_start, *previous_days]) : m.start()]
        if m.group(2):  # "30 days net"
            conf = Decimal("0.90")
        elif re.search(r"\b(?:pa(?:y|id|yable|yment)|due|remit\w*|settle\w*)\b", clause, re.I) and re.search(
            r"\b(invoice\w*|receipt|bill(?:ing)?|statement|date|terms?)\b", clause, re.I
        ):
            conf = Decimal("0.85")
        elif (re.search(r"\bpayment\s+terms?\b", s, re.I) and re.search(r"\bterms?\b", window_before, re.I)) or (
            re.match(r"\s*(?:payment(?:\s+terms?)?|terms\s+of\s+payment)\s*:", s, re.I) and m.start() < 40
        ):
            conf = Decimal("0.75")
        else:
            continue
        distractors = [x.end() for x in _NOT_PAYMENT.finditer(window_before)]
        pay_verbs = [
            x.start()
            for x in re.finditer(r"\b(?:pa(?:y|id|yable|yment)s?|due|remit\w*|settle\w*|net)\b", window_before, re.I)
        ]
        if distractors and (not pay_verbs or max(distractors) > max(pay_verbs)):
            continue
        if re.search(r"\bnotice\b|\bprior\s+written\b", s[m.end() : m.end() + 25], re.I):
            continue
        if re.search(
            r"\b(after|following|from)\s+(?:the\s+)?(?:end|close)\s+of\s+(?:the|each)\s+"
            r"(?:month|quarter)\b",
            clause,
            re.I,
        ) and not re.search(r"invoice", clause, re.I):
            conf -= Decimal("0.10")
        out.append(Term(PAYMENT_TERMS, str(days), s, conf, position=piece.index, superseded=_is_old(s, m.start())))
    return out


# --- caps ------------------------------------------------------------------------------------------------

_CAP_PHRASE = re.compile(
    r"\b(?:not[\s-]+to[\s-]+exceed|NTE\b|(?:shall|will|may|must|does|do|can)\s+not\s+(?:in\s+aggregate\s+)?exceed|"
    r"in\s+no\s+event\s+(?:shall|will)\b[^.;]{0,80}?\bexceed|never\s+exceed|"
    r"capped(?:\s+at)?|cap(?:ped)?\s+(?:of|at|is|will\s+be|shall\s+be)|(?:fee|fees|budget|price|cost|spend)\s+cap\b|"
    r"\bcap\b|ceiling|maximum\s+(?:total\s+|overall\s+|contract\s+|aggregate\s+)?(?:budget|fees?|amount|value|"
    r"price|charges?|spend|contract\s+value|payable)|upper\s+limit|limit\s+(?:on|of)\s+(?:the\s+)?(?:total\s+)?(?:charges|fees|spend)|limited\s+to|up\s+to\s+a\s+maximum\s+of|"
    r"(?:total|overall|aggregate)\s+(?:fees?|charges|budget|price)\s+(?:payable\s+)?(?:are\s+|is\s+)?limited)",
    re.I,
)
_NOT_CAP = re.compile(
    r"\b(liab\w+|liable|damages?|indemn\w+|insurance|insured|interest|penalt\w+|credit\s+note|"
    r"per\s+diems?|travel|expenses?(?!\s+(?:and|or)\s+fees)|subsistence|mileage|accommodation|hotel|meals?|"
    r"disburse\w*|out-of-pocket|single\s+invoice|each\s+invoice|per\s+invoice|any\s+one\s+invoice|hours?\s+per|"
    r"overtime|tax(?:es)?\s+shall|retention|deposit|discount)\b",
    re.I,
)


def _caps(piece: Piece, default_ccy: str) -> list[Term]:
    s = piece.text
    out = []
    for m in _CAP_PHRASE.finditer(s):
        phrase = m.group(0)
        if phrase.lower() == "cap" and not re.search(
            r"\b(?:fee|fees|total|budget|overall|the)\s+cap\b|\bcap\b\s*"
            r"(?:of|at|is|:|will|shall|amount)",
            s,
            re.I,
        ):
            continue
        clause_start = max([0, *[x.end() for x in re.finditer(r"[;:]\s|\.\s", s[: m.start()])]])
        clause_end = m.end() + next((x.start() for x in re.finditer(r";|\.\s", s[m.end() :])), len(s) - m.end())
        clause = s[clause_start:clause_end]
        before = s[clause_start : m.start()]
        if _NOT_CAP.search(before) or (
            _NOT_CAP.search(s[m.end() : m.end() + 25])
            and not re.search(r"\b(fees?|charges|budget)\b", s[m.end() : m.end() + 25], re.I)
        ):
            continue
        if re.search(r"\b(no|without\s+(?:a|any))\s+(?:fee\s+)?(?:cap|ceiling|maximum)\b", clause, re.I):
            continue
        if re.search(
            r"\b(?:estimate[ds]?|approximately|anticipated|expected|indicative)\b", before, re.I
        ) and not re.search(r"not\s+to\s+exceed|ceiling|cap", phrase, re.I):
            continue
        monies = [x for x in find_money(s[m.end() : clause_end]) if x.amount >= 1000]
        if monies:
            money = monies[0]
            # "from EUR 100,000 to EUR 150,000": the last non-superseded amount in the clause
            olds = [x for x in monies if _is_old(s, m.end() + x.start)]
            news = [x for x in monies if not _is_old(s, m.end() + x.start)]
            money = news[0] if news else monies[0]
            start = m.end() + money.start
        else:  # "EUR 120,000 (the ceiling)"
            back = [x for x in find_money(before) if x.amount >= 1000]
            if not back:
                continue
            money, olds = back[-1], []
            start = clause_start + money.start
        ccy = money.currency or default_ccy
        conf = Decimal("0.90") if re.search(r"exceed|ceiling|cap|maximum", phrase, re.I) else Decimal("0.75")
        if not money.currency:
            conf -= Decimal("0.15")
        old_text = ", ".join(f"{x.amount.quantize(Decimal('0.01'))} {x.currency or ccy}" for x in olds)
        out.append(
            Term(
                CAP,
                f"{money.amount.quantize(Decimal('0.01'))} {ccy}",
                s,
                conf,
                position=piece.index,
                superseded=_is_old(s, start),
                supersedes=old_text,
            )
        )
    return out


# --- rates -----------------------------------------------------------------------------------------------

_HOUR = r"(?:hours?|hrs?|h)"
_DAY = r"(?:(?:person|man|working|business|consultant)[- ]?days?|days?|PD|MD)"
_UNIT_AFTER = re.compile(
    rf"^\s*(?:\(?\s*(?:excl\w*|plus|\+|net)[^)]{{0,20}}\)?\s*)?(?:(?:per|/|an?|each|every)\s*"
    rf"(?P<u>{_HOUR}|{_DAY})\b|(?P<u2>hourly|daily|p\.?h\.?|p\.?d\.?)\b)",
    re.I,
)
_UNIT_BEFORE = re.compile(
    rf"\b(?P<u>hourly|daily|day|per\s+{_HOUR}|per\s+{_DAY}|{_HOUR}ly)\s+(?:billing\s+|"
    r"charge[- ]out\s+|fee\s+)?(?:rates?|fees?|charges?|prices?)\b[^.;]{0,80}$",
    re.I,
)
_RATE_WORD = re.compile(r"\b(rates?|fees?|charged?|bill(?:ed|able)?|prices?|tariffs?)\b", re.I)
_NOT_RATE = re.compile(
    r"\b(per\s+diems?|travel\w*|expenses?|subsistence|mileage|accommodation|hotel|meals?|allowance|lodging|"
    r"interest|penalt\w+|late\s+(?:payment|fee)|overtime\s+premium|parking|kilomet\w+|km|mile)\b",
    re.I,
)


def _unit_of(text: str) -> str:
    t = text.lower()
    if re.search(rf"\b(?:hourly|per\s+{_HOUR}|/\s*{_HOUR}|an\s+hour|{_HOUR}ly)\b|/h\b", t):
        return "hour"
    if re.search(rf"\b(?:daily|day\s+rate|per\s+{_DAY}|/\s*{_DAY}|a\s+day)\b|/d\b|\bpd\b", t):
        return "day"
    return ""


def _hours_per_day_in(text: str) -> Decimal | None:
    m = re.search(
        r"\b(\d{1,2}(?:[.,]\d{1,2})?)[- ]hours?\s+(?:working\s+|business\s+|consulting\s+)?day\b|"
        r"\b(?:a|one|each|per)\s+(?:working\s+|business\s+|consulting\s+|person[- ])?day\s+(?:is|"
        r"consists\s+of|equals|means|comprises|shall\s+(?:mean|be|comprise)|=|of)\s+"
        r"(?:up\s+to\s+)?(\d{1,2}(?:[.,]\d{1,2})?)\s+(?:working\s+|billable\s+)?hours?\b|"
        r"\bdays?\s+(?:are|is)\s+(?:based\s+on|calculated\s+(?:on|at))\s+(\d{1,2}(?:[.,]\d{1,2})?)"
        r"\s+hours?\b",
        text,
        re.I,
    )
    if not m:
        return None
    value = Decimal((m.group(1) or m.group(2) or m.group(3)).replace(",", "."))
    return value if 4 <= value <= 12 else None


def _hourly(amount: Decimal, unit: str, per_day: Decimal) -> Decimal:
    return amount / per_day if unit == "day" else amount


def _rate_value(amount: Decimal, ccy: str) -> str:
    return f"{amount.quantize(Decimal('0.0001'))} {ccy}"


def _table_rates(piece: Piece, ctx: dict) -> list[Term]:
    cells = piece.cells
    if _NOT_RATE.search(piece.text):
        return []
    role_cells = [i for i, c in enumerate(cells) if not find_money(c, bare=True) and re.search(r"[A-Za-z]{3}", c)]
    if not role_cells:
        return []
    book: RoleBook = ctx["roles"]
    role_text = ""
    role_code = ""
    for i in role_cells:  # the first cell that names a role (a "Level" column may come before the title)
        code = book.code(cells[i])
        if code:
            role_text, role_code = cells[i], code
            break
    if not role_text:
        candidates = [
            cells[i]
            for i in role_cells
            if _ROLE_PHRASE.search(cells[i])
            and _unit_of(cells[i]) == ""
            and not re.fullmatch(r"(?:per\s+)?(?:hour|day|hourly|daily|" + "|".join(CODES) + r")s?", cells[i], re.I)
        ]
        if not candidates:
            return []
        role_text = candidates[0]
    header = piece.header
    found: list[tuple[Decimal, str, str, int]] = []  # amount, currency, unit, column
    if re.search(r"\b(?:total|cap|ceiling|budget|milestone|exceed)\b", role_text, re.I):
        return []
    for col, cell in enumerate(cells):
        monies = find_money(cell, bare=True)
        if not monies or (col in role_cells and not any(m.currency for m in monies)):
            continue
        for money in monies[:1]:
            if not money.currency and not re.fullmatch(r"[\d\s.,'’]+(?:\s*(?:/\s*\w+|per\s+\w+))?", cell.strip()):
                continue
            head = header[col] if col < len(header) and len(header) == len(cells) else ""
            unit = _unit_of(cell) or _unit_of(head) or _unit_of(piece.table_note) or _unit_of(" ".join(header)) or ""
            ccy = (
                money.currency
                or _ccy_in(head)
                or _ccy_in(" ".join(header))
                or _ccy_in(piece.table_note)
                or ctx["currency"]
            )
            if money.amount > 20000 or money.amount < 10:
                continue
            found.append((money.amount, ccy, unit, col))
    if not found:
        return []
    hourly = [f for f in found if f[2] == "hour"]
    choice = hourly[0] if hourly else found[0]
    amount, ccy, unit, _ = choice
    conf = Decimal("0.85")
    note = ""
    if not unit:
        unit = "day" if amount >= 700 else "hour"
        conf -= Decimal("0.15")
        note = f"No unit given; read as per {unit}."
    if unit == "day":
        note = (note + " " if note else "") + f"Day rate ÷ {ctx['per_day_text']}."
    if not role_code:
        conf -= Decimal("0.30")
    if not ccy:
        conf -= Decimal("0.20")
    return [
        Term(
            RATE,
            _rate_value(_hourly(amount, unit, ctx["per_day"]), ccy),
            piece.text,
            conf,
            role_code,
            role_text,
            note=note.strip(),
            position=piece.index,
        )
    ]


def _ccy_in(text: str) -> str:
    m = re.search(rf"(?<![A-Za-z])({_CCY})(?![A-Za-z])", text)
    if m:
        raw = m.group(1).upper()
        return CURRENCY_SIGNS.get(raw, raw)
    m = re.search(_CCY_WORD, text, re.I)
    return CURRENCY_WORDS.get(re.sub(r"\s+", " ", m.group(0).lower()), "") if m else ""


def _prose_rates(piece: Piece, ctx: dict) -> list[Term]:
    s = piece.text
    monies = [m for m in find_money(s) if m.currency]
    book: RoleBook = ctx["roles"]
    declared = re.search(rf"\b(?:in|\()\s*({_CCY})\s*(?:per|/)\s*({_HOUR}|{_DAY})\b", s, re.I)
    if not monies and declared:  # "Rates are in EUR per hour: Partner 320, Senior Consultant 240"
        ccy = _ccy_in(declared.group(1))
        monies = [Money(m.amount, ccy, m.start, m.end) for m in find_money(s[declared.end() :], bare=True)]
        monies = [Money(m.amount, m.currency, m.start + declared.end(), m.end + declared.end()) for m in monies]
    if not monies:
        return []
    mentions = list(book.mentions(s))
    sentence_unit = ""
    tail = re.search(
        r"\b(?:all|each|both|every\s+\w+)\s+(?:are\s+|is\s+|being\s+)?(?:quoted\s+|charged\s+|stated\s+)?"
        rf"(?:per\s+(?P<u>{_HOUR}|{_DAY})|(?P<u2>hourly|daily))\b|\b(?P<u3>hourly|daily|day)\s+rates?\s*"
        r"(?::|are\b|is\b|as\s+follows|of\b|below|apply|set\s+out)|\brates?\s+(?:are|is)\s+(?:quoted\s+|charged\s+|expressed\s+)?"
        rf"(?:per\s+(?P<u4>{_HOUR}|{_DAY})|(?P<u5>hourly|daily))\b",
        s,
        re.I,
    )
    if tail:
        sentence_unit = _unit_of("per " + next(g for g in tail.groups() if g)) or _unit_of(tail.group(0))
    elif declared:
        sentence_unit = _unit_of("per " + declared.group(2))
    out = []
    used_roles: set[int] = set()
    for money in monies:
        if money.amount < 10 or money.amount > 20000:
            continue
        window_before = s[max(0, money.start - 90) : money.start]
        window_after = s[money.end : money.end + 40]
        local = s[max(0, money.start - 50) : money.end + 30]
        if _NOT_RATE.search(local):
            continue
        if re.search(
            r"\b(cap|ceiling|exceed|budget|total|maximum|retainer|fixed\s+fee|per\s+month|a\s+month|"
            r"monthly|per\s+quarter|quarterly|per\s+(?:milestone|deliverable|annum|year|license|user))\b",
            window_after[:25] + " " + window_before[-35:],
            re.I,
        ) and not _unit_of(window_after[:25]):
            continue
        ua = _UNIT_AFTER.search(window_after)
        unit = ""
        if ua:
            unit = _unit_of("per " + (ua.group("u") or "")) if ua.group("u") else _unit_of(ua.group("u2"))
        if not unit:
            ub = _UNIT_BEFORE.search(window_before)
            if ub:
                unit = _unit_of(ub.group("u") + " rate")
        if not unit and sentence_unit:
            unit = sentence_unit
        if not unit and ctx.get("doc_unit") and _RATE_WORD.search(s) and mentions:
            unit = ctx["doc_unit"]
        if not unit:
            continue
        # the role: the mention closest before the amount in its clause, else the next one after ("… for Partners")
        role = None
        before = [
            (i, r)
            for i, r in enumerate(mentions)
            if r[1] <= money.start and i not in used_roles and not re.search(r"[;]|\.\s", s[r[1] : money.start])
        ]
        after = [
            (i, r)
            for i, r in enumerate(mentions)
            if r[0] >= money.end and i not in used_roles and not re.search(r"[;,]|\.\s", s[money.end : r[0]])
        ]
        for_after = [
            (i, r)
            for i, r in after
            if re.search(r"\b(?:for|of)\s+(?:an?\s+|the\s+|each\s+|all\s+)?$", s[money.end : r[0]][-25:], re.I)
        ]
        if for_after:
            role = for_after[0]
        elif before:
            role = before[-1]
        elif after:
            role = after[0]
        if role is None:
            continue
        i, (_, _, rtext, rcode) = role
        old = _is_old(s, money.start)
        if not old:
            used_roles.add(i)
        conf = Decimal("0.85") if ua or _UNIT_BEFORE.search(window_before) else Decimal("0.75")
        if not rcode:
            conf -= Decimal("0.30")
        note = f"Day rate ÷ {ctx['per_day_text']}." if unit == "day" else ""
        out.append(
            Term(
                RATE,
                _rate_value(_hourly(money.amount, unit, ctx["per_day"]), money.currency),
                s,
                conf,
                rcode,
                rtext,
                note=note,
                position=piece.index,
                superseded=old,
            )
        )
    return out


# --- frequency -------------------------------------------------------------------------------------------

_BILL_WORDS = re.compile(
    r"\b(invoic\w*|bill\w*|charg\w*|fees?\s+(?:are|will\s+be|shall\s+be)\s+(?:payable|due|"
    r"invoiced)|payments?\s+(?:are|will\s+be|shall\s+be)\s+(?:made|due)|payment\s+schedule|"
    r"statements?\s+of\s+account)\b",
    re.I,
)
_FREQ = [
    (
        "on_milestone",
        re.compile(
            r"\b(?:upon|on|at|after|following|against)\s+(?:the\s+)?(?:[\w']+\s+){0,3}?"
            r"(?:completion|acceptance|achievement|sign[- ]?off|approval|delivery)\s+of\s+(?:each|every|the\s+"
            r"(?:relevant|respective|corresponding)|a|the)?\s*(?:\w+\s+){0,2}?(?:milestones?|deliverables?|phases?)\b|"
            r"\bmilestones?[- ](?:basis|based|payments?|billing|invoic\w*)\b|\b(?:against|per|by|at)\s+(?:each\s+)?"
            r"milestones?\b|\bon\s+milestones?\b|\bwhen\s+(?:each|a|the)\s+milestone\s+(?:is|has\s+been)\s+"
            r"(?:accepted|achieved|completed|reached|signed\s+off)|\bmilestones?\s+(?:as\s+)?(?:set\s+out|listed|"
            r"described)\b[^.]*\b(?:invoic|bill|payable)",
            re.I,
        ),
    ),
    (
        "quarterly",
        re.compile(
            r"\bquarterly\b|\b(?:each|every|per|of\s+each|of\s+every)\s+(?:calendar\s+|financial\s+|fiscal\s+)?quarter\b|"
            r"\bevery\s+three\s+months\b|\bthree[- ]monthly\b",
            re.I,
        ),
    ),
    (
        "monthly",
        re.compile(
            r"\bmonthly\b|\b(?:each|every|per|of\s+each|of\s+every|of\s+the)\s+(?:calendar\s+)?month\b|"
            r"\bmonth[- ]end\b|\bend\s+of\s+(?:the|each|every)\s+month\b",
            re.I,
        ),
    ),
]
_NOT_FREQ = re.compile(
    r"\b(report\w*|meeting|meets?|review|steering|status|check[- ]in|interest|call|newsletter|"
    r"forecast|timesheets?|governance|workshop|update)\b",
    re.I,
)


def _frequencies(piece: Piece) -> list[Term]:
    s = piece.text
    bill = _BILL_WORDS.search(s)
    if not bill:
        return []
    out = []
    for value, pattern in _FREQ:
        for m in pattern.finditer(s):
            near = s[max(0, m.start() - 60) : m.end() + 40]
            if not _BILL_WORDS.search(near):
                continue
            amount_per_period = (
                value != "on_milestone"
                and re.search(r"\b(?:per|a|each)\s+(?:month|quarter)\b", m.group(0), re.I)
                and re.search(rf"{_CCY}\s?\d|\d\s?{_CCY}|interest|%", s[max(0, m.start() - 30) : m.start()], re.I)
            )
            # "EUR 10,000 per month", "1% per month": an amount per period, not the invoicing rhythm
            if amount_per_period and not re.search(r"\binvoic\w*\b[^.]{0,40}" + re.escape(m.group(0)), s, re.I):
                continue
            if _NOT_FREQ.search(s[max(0, m.start() - 30) : m.end() + 20]) and not re.search(
                r"\binvoic\w*|\bbill\w*", s[max(0, m.start() - 40) : m.end() + 25], re.I
            ):
                continue
            if re.search(
                r"\b(?:not|never|no\s+longer|rather\s+than|instead\s+of)\s+(?:be\s+)?(?:invoiced\s+)?$",
                s[max(0, m.start() - 25) : m.start()],
                re.I,
            ):
                out.append(Term(FREQUENCY, value, s, Decimal("0.5"), position=piece.index, superseded=True))
                continue
            conf = Decimal("0.85") if value != "on_milestone" else Decimal("0.80")
            out.append(Term(FREQUENCY, value, s, conf, position=piece.index, superseded=_is_old(s, m.start())))
    return out


# --- PO number -------------------------------------------------------------------------------------------

_PO = re.compile(
    r"\b(?:purchase\s+order|P\.?\s?O\.?)(?!\s*box)\s*(?:number|no\.?|num\.?|#|reference|ref\.?)?\s*(?:is|:|#|-)?\s*"
    r"(?P<po>[A-Z0-9][A-Z0-9\-/]{3,30})",
    re.I,
)


def _po_numbers(piece: Piece) -> list[Term]:
    """PO numbers after "purchase order" / "PO" (with "… changed from A to B": both, A superseded)."""
    s = piece.text
    out = []
    for m in _PO.finditer(s):
        start = m.start("po")
        window = s[start : start + 70]
        window = window[: next((x.start() for x in re.finditer(r"\.\s|;|\.$", window)), len(window))]
        tokens = [
            t
            for t in re.finditer(r"(?<![\w-])[A-Z0-9][A-Z0-9\-/]{3,30}(?![\w-])", window, re.I)
            if re.search(r"\d", t.group(0)) and not re.fullmatch(r"(?:19|20)\d\d", t.group(0))
        ]
        if re.search(r"box", m.group(0), re.I):
            continue
        for t in tokens[:2]:
            if t.start() > 0 and not re.fullmatch(
                r"[\s\w]*?(?:from|to|by|with|is|:|#|-|and)?\s*",
                window[: t.start()] if t == tokens[0] else window[tokens[0].end() : t.start()],
                re.I,
            ):
                break
            po = t.group(0).rstrip(".,;-/")
            out.append(
                Term(PO_NUMBER, po, s, Decimal("0.85"), position=piece.index, superseded=_is_old(s, start + t.start()))
            )
    return out


# --- the whole document ----------------------------------------------------------------------------------


def _dominant_currency(text: str) -> str:
    counts: dict[str, int] = {}
    for money in find_money(text):
        if money.currency:
            counts[money.currency] = counts.get(money.currency, 0) + 1
    return max(counts, key=counts.get) if counts else ""


def extract(
    text: str,
    *,
    roles: RoleBook,
    hours_per_day: Decimal,
    hours_per_day_source: str = "firm setting",
    contract_currency: str = "",
) -> list[Term]:
    """The terms of a statement of work or change order: one value per field (one rate per role)."""
    text = normalise_numbers(text)
    stated = _hours_per_day_in(text)
    per_day = stated or hours_per_day
    per_day_text = (
        f"{per_day.normalize()} h (as the document states)"
        if stated
        else f"{per_day.normalize()} h ({hours_per_day_source})"
    )
    currency = _dominant_currency(text) or contract_currency
    doc_unit = ""
    m = re.search(
        r"\ball\s+(?:rates|fees|prices)\s+(?:are|in\s+this\s+\w+\s+are|quoted)\s+(?:quoted\s+|stated\s+)?"
        r"(per\s+\w+|hourly|daily)",
        text,
        re.I,
    )
    if m:
        doc_unit = _unit_of(m.group(1))
    ctx = {"roles": roles, "per_day": per_day, "per_day_text": per_day_text, "currency": currency, "doc_unit": doc_unit}
    found: list[Term] = []
    for piece in pieces(text):
        found += _payment_terms(piece)
        found += _caps(piece, currency)
        found += _table_rates(piece, ctx) if piece.cells else _prose_rates(piece, ctx)
        found += _frequencies(piece)
        found += _po_numbers(piece)
    return _resolve(found, contract_currency)


def _resolve(found: list[Term], contract_currency: str) -> list[Term]:
    """One value per field (per role for rates): a new value beats a superseded one, then later beats earlier
    in an amendment, then the surest; the others of the same field are named as context."""
    groups: dict[tuple[str, str], list[Term]] = {}
    for t in found:
        if contract_currency and t.field in (RATE, CAP) and not t.value.endswith(contract_currency):
            t.confidence -= Decimal("0.20")
        key = (t.field, (t.role_code or t.role_text.lower().rstrip("s")) if t.field == RATE else "")
        groups.setdefault(key, []).append(t)
    out = []
    for terms in groups.values():
        live = [t for t in terms if not t.superseded] or terms
        amended = any(t.superseded or t.supersedes for t in terms)
        if amended:
            best = max(live, key=lambda t: (t.position, t.confidence))
        else:
            # the value most often stated, then the surest, then the later one
            counts: dict[str, int] = {}
            for t in live:
                counts[t.value] = counts.get(t.value, 0) + 1
            best = max(live, key=lambda t: (counts[t.value], t.confidence, t.position))
        others = sorted({t.value for t in terms if t.value != best.value})
        if others and not best.supersedes:
            best.supersedes = ", ".join(others) if amended else ""
            if not amended:
                best.note = (best.note + " " if best.note else "") + f"Also stated: {', '.join(others)}."
                best.confidence -= Decimal("0.10")
        best.confidence = max(Decimal("0.05"), min(Decimal("0.99"), best.confidence))
        out.append(best)
    order = {PAYMENT_TERMS: 0, CAP: 1, RATE: 2, FREQUENCY: 3, PO_NUMBER: 4}
    return sorted(out, key=lambda t: (order.get(t.field, 9), t.position))
