"""Billing domain model (docs/rules/domain.md), split by subject."""

from billing.models.contracts import (
    ChangeOrder,
    ChangeOrderMilestone,
    ChangeOrderRate,
    Contract,
    ContractRate,
    Project,
)
from billing.models.documents import DeliveryAttempt, InvoiceDocument
from billing.models.invoices import (
    BillingRun,
    Invoice,
    InvoiceException,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoiceTax,
    Payment,
)
from billing.models.masterdata import (
    Client,
    FxRate,
    LegalEntity,
    Person,
    RateCard,
    RateCardLine,
    Role,
    TaxRule,
)
from billing.models.purchase_orders import PurchaseOrder
from billing.models.runs import BillingRunChunk
from billing.models.tax_recordings import TaxEngineRecording
from billing.models.vat_checks import VatCheck
from billing.models.work import Expense, Milestone, TimeEntry

__all__ = [
    "BillingRun",
    "BillingRunChunk",
    "ChangeOrder",
    "ChangeOrderMilestone",
    "ChangeOrderRate",
    "Client",
    "Contract",
    "ContractRate",
    "DeliveryAttempt",
    "Expense",
    "FxRate",
    "Invoice",
    "InvoiceDocument",
    "InvoiceException",
    "InvoiceLine",
    "InvoiceNumberSequence",
    "InvoiceTax",
    "LegalEntity",
    "Milestone",
    "Payment",
    "Person",
    "Project",
    "PurchaseOrder",
    "RateCard",
    "RateCardLine",
    "Role",
    "TaxEngineRecording",
    "TaxRule",
    "TimeEntry",
    "VatCheck",
]
