"""Master data: legal entities, clients, people, rate cards, tax rules, FX rates."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from simple_history.models import HistoricalRecords

from billing.peppol import endpoint_for, participant_id_problem, validate_leitweg_id, validate_participant_id
from billing.vat import EU_MEMBER_STATES, vat_id_is_valid
from kernel.fields import (
    FX,
    PERCENT,
    RATE,
    ExternallyIdentified,
    TimeStamped,
    country_field,
    currency_field,
    supported_currency_constraint,
)


class LegalEntity(TimeStamped):
    """A company of the group that issues invoices; numbering is gapless per entity."""

    code = models.CharField(max_length=20, unique=True)
    name = models.CharField(max_length=200)
    country = country_field()
    currency = currency_field()
    vat_id = models.CharField(max_length=30, blank=True, default="")
    peppol_id = models.CharField(
        "Peppol participant id",
        max_length=60,
        blank=True,
        default="",
        db_default="",  # raw-SQL writers (the bench floor) leave it out
        validators=[validate_participant_id],
        help_text="SCHEME:VALUE from Peppol's Electronic Address Scheme list, e.g. 0208:0123456749 (BE enterprise "
        "number), 0088:… (GLN), 9959:… (US EIN). Empty: the VAT id under its country's scheme (9930 DE, 9925 BE …).",
    )
    address_line1 = models.CharField(max_length=200, blank=True, default="")
    city = models.CharField(max_length=100, blank=True, default="")
    postal_code = models.CharField(max_length=20, blank=True, default="")
    invoice_prefix = models.CharField(max_length=20, blank=True, default="", help_text="Defaults to the code.")
    contact_name = models.CharField(
        max_length=100, blank=True, default="", db_default="", help_text="Seller contact on e-invoices [BG-6]."
    )
    contact_phone = models.CharField(max_length=40, blank=True, default="", db_default="")
    contact_email = models.EmailField(blank=True, default="", db_default="")
    bank_name = models.CharField(max_length=100, blank=True, default="")
    iban = models.CharField(max_length=34, blank=True, default="")
    bic = models.CharField(max_length=11, blank=True, default="")
    # Where there is no IBAN (US): the account number and the ABA routing number [BT-84, BT-86].
    bank_account_number = models.CharField(max_length=34, blank=True, default="", db_default="")
    bank_routing_number = models.CharField(
        "ABA routing number", max_length=20, blank=True, default="", db_default="",
    )
    remittance_address = models.CharField(
        max_length=300, blank=True, default="", db_default="",
        help_text="Where cheques and remittance advice go (printed under the bank details), e.g. "
        "'Remittance advice to ar@hudson.example; cheques to Hudson Advisory Inc, PO Box 1234, New York, NY 10008'.",
    )
    # Legal content of the letterhead and footer, per the entity's country (docs/rules/einvoicing.md).
    register_court = models.CharField(
        max_length=100, blank=True, default="", db_default="",
        help_text="DE: the register court, e.g. 'Amtsgericht Hamburg'. GB: where registered, e.g. "
        "'Registered in England and Wales'.",
    )
    register_number = models.CharField(
        max_length=50, blank=True, default="", db_default="",
        help_text="DE: commercial register number (HRB 123456). GB: company number.",
    )
    registered_office = models.CharField(
        max_length=300, blank=True, default="", db_default="",
        help_text="GB: the registered office address, when it differs from the address above (else the address).",
    )
    managing_directors = models.CharField(
        max_length=300, blank=True, default="", db_default="",
        help_text="DE: Geschäftsführer / Vorstand, comma-separated. GB: directors, if printed.",
    )
    sales_tax_statement = models.CharField(
        max_length=300, blank=True, default="", db_default="",
        help_text="US entities: the sales-tax statement printed on invoices to US clients, e.g. 'Consulting "
        "services are not subject to New York State sales tax.'",
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "legal entities"
        ordering = ["code"]
        constraints = [supported_currency_constraint("legalentity")]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    @property
    def number_prefix(self) -> str:
        return self.invoice_prefix or self.code


class Client(ExternallyIdentified, TimeStamped):
    """A customer; `master_data_problems()` lists what blocks invoicing it."""

    class DeliveryChannel(models.TextChoices):
        EMAIL = "email", "E-mail"
        PEPPOL = "peppol", "Peppol (access point)"
        PORTAL = "portal", "Customer portal"

    code = models.CharField(max_length=40, unique=True)
    legal_name = models.CharField(max_length=200)
    address_line1 = models.CharField(max_length=200, blank=True, default="")
    address_line2 = models.CharField(max_length=200, blank=True, default="")
    city = models.CharField(max_length=100, blank=True, default="")
    postal_code = models.CharField(max_length=20, blank=True, default="")
    country = country_field()
    region = models.CharField(
        "state / region", max_length=3, blank=True, default="", db_default="",
        help_text="Ship-to state or region code (ISO 3166-2 subdivision, e.g. NY): US sales tax is charged by it.",
    )
    vat_id = models.CharField(max_length=30, blank=True, default="")
    peppol_id = models.CharField(
        "Peppol participant id",
        max_length=60,
        blank=True,
        default="",
        db_default="",  # raw-SQL writers (the bench floor) leave it out
        validators=[validate_participant_id],
        help_text="SCHEME:VALUE from Peppol's Electronic Address Scheme list, e.g. 0208:0123456749 (BE enterprise "
        "number), 0088:… (GLN), 9959:… (US EIN). Empty: the VAT id under its country's scheme (9930 DE, 9925 BE …).",
    )
    currency = currency_field()
    payment_terms_days = models.PositiveSmallIntegerField(default=30)
    po_required = models.BooleanField(default=False)
    billing_emails = models.CharField(
        max_length=500, blank=True, default="", help_text="Comma-separated addresses invoices are sent to."
    )
    credit_hold = models.BooleanField(default=False)
    consolidate_invoices = models.BooleanField(
        default=False,
        db_default=False,  # raw-SQL writers (the bench floor) leave it out
        help_text="One invoice per (entity, currency, PO) per billing run for all the client's contracts.",
    )
    einvoice_by_email = models.BooleanField(
        default=False, db_default=False, help_text="Attach the UBL e-invoice (EN 16931) to the invoice e-mail."
    )
    erp_id = models.CharField(max_length=100, blank=True, default="")
    delivery_channel = models.CharField(
        max_length=10, choices=DeliveryChannel.choices, default=DeliveryChannel.EMAIL,
        db_default=DeliveryChannel.EMAIL,
        help_text="How issued invoices reach the client. Peppol needs the client's Peppol participant id.",
    )
    not_vat_registered = models.BooleanField(
        "not VAT-registered (private person / public body)", default=False, db_default=False,
        help_text="The client is not a business for VAT (a private person, or a public body acting as such): "
        "without a VAT id it is charged the seller's VAT, and the invoice says why.",
    )
    leitweg_id = models.CharField(
        "Leitweg-ID", max_length=46, blank=True, default="", db_default="",
        validators=[validate_leitweg_id],
        help_text="German public buyers: their Leitweg-ID (e.g. 991-33333TEST-33). Set: the e-invoice is an "
        "XRechnung with the Leitweg-ID as buyer reference.",
    )
    facturx = models.BooleanField(
        "Factur-X / ZUGFeRD PDF", default=False, db_default=False,
        help_text="The invoice PDF is a PDF/A-3 with the EN 16931 CII e-invoice embedded (Factur-X / ZUGFeRD).",
    )
    # The last VIES answer for the VAT id (billing.services.vat_checks; every check is a VatCheck row):
    # cached here so the client's history shows each change of the answer.
    vies_result = models.CharField(
        "VIES result", max_length=12, blank=True, default="", db_default="",
        help_text="valid / invalid / unavailable: the last VIES check of the VAT id (empty: never checked).",
    )
    vies_checked_at = models.DateTimeField("VIES checked at", null=True, blank=True)
    vies_consultation_number = models.CharField("VIES consultation number", max_length=40, blank=True,
                                                default="", db_default="")
    history = HistoricalRecords()

    class Meta(ExternallyIdentified.Meta):
        ordering = ["code"]
        constraints = [
            *ExternallyIdentified.Meta.constraints,
            models.UniqueConstraint(fields=["erp_id"], condition=~Q(erp_id=""), name="billing_client_unique_erp_id"),
            supported_currency_constraint("client"),
            models.CheckConstraint(
                condition=~Q(delivery_channel="peppol") | ~Q(peppol_id=""),
                name="billing_client_peppol_channel_needs_peppol_id",
                violation_error_message="The Peppol delivery channel needs the client's Peppol participant id.",
            ),
            models.CheckConstraint(
                condition=Q(delivery_channel__in=["email", "peppol", "portal"]),
                name="billing_client_delivery_channel_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.legal_name}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        super().clean()
        if self.delivery_channel == self.DeliveryChannel.PEPPOL and not self.peppol_id.strip():
            raise ValidationError({"delivery_channel": "The Peppol channel needs the client's Peppol participant id "
                                   "(SCHEME:VALUE): set it first, or choose e-mail or the customer portal."})
        if self.leitweg_id and self.country != "DE":
            raise ValidationError({"leitweg_id": "A Leitweg-ID belongs to German public buyers (country DE)."})

    @property
    def is_xrechnung_buyer(self) -> bool:
        """A German public buyer: its e-invoice is an XRechnung."""
        return bool(self.leitweg_id.strip())

    @property
    def has_valid_vat_id(self) -> bool:
        return bool(self.vat_id) and vat_id_is_valid(self.vat_id, self.country)

    @property
    def billing_email_list(self) -> list[str]:
        return [e.strip() for e in self.billing_emails.split(",") if e.strip()]

    def master_data_problems(self) -> list[str]:
        """What must be fixed on this client before an invoice can go out."""
        from django.core.exceptions import ValidationError
        from django.core.validators import validate_email

        problems = []
        if not self.legal_name.strip():
            problems.append("Legal name is missing.")
        missing = [
            label
            for label, value in (("street", self.address_line1), ("city", self.city), ("postal code", self.postal_code))
            if not value.strip()
        ]
        if missing:
            problems.append(f"Billing address is incomplete: {', '.join(missing)} missing.")
        if not self.country:
            problems.append("Country is missing.")
        emails = self.billing_email_list
        if not emails:
            problems.append("No billing e-mail address.")
        for email in emails:
            try:
                validate_email(email)
            except ValidationError:
                problems.append(f"Billing e-mail {email!r} is not a valid address.")
        if self.vat_id and not vat_id_is_valid(self.vat_id, self.country):
            problems.append(f"VAT id {self.vat_id} is not valid for {self.country}.")
        if not self.vat_id and self.country in EU_MEMBER_STATES and not self.not_vat_registered:
            problems.append(
                "No VAT id: if the client is a business, enter its VAT id (reverse charge may apply); if it is "
                "a private person or a public body not registered for VAT, tick 'not VAT-registered'."
            )
        if self.delivery_channel == self.DeliveryChannel.PEPPOL and not self.peppol_id.strip():
            problems.append("The Peppol delivery channel needs the client's Peppol participant id.")
        if self.peppol_id and (problem := participant_id_problem(self.peppol_id)):
            problems.append(problem)
        elif (
            self.einvoice_by_email
            and endpoint_for(peppol_id=self.peppol_id, vat_id=self.vat_id, country=self.country) is None
        ):
            problems.append(
                "E-invoice by e-mail is on, but the client has no Peppol electronic address: "
                "set its Peppol participant id (or a VAT id of a Peppol country)."
            )
        return problems


class Role(models.Model):
    code = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=100, blank=True, default="")
    history = HistoricalRecords()

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class Person(ExternallyIdentified, TimeStamped):
    """A consultant who books time; may have a portal login."""

    code = models.CharField(max_length=60, unique=True)
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True, default="")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="people")
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="person"
    )
    home_entity = models.ForeignKey(LegalEntity, null=True, blank=True, on_delete=models.PROTECT)
    active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta(ExternallyIdentified.Meta):
        ordering = ["name"]
        verbose_name_plural = "people"

    def __str__(self) -> str:
        return self.name


class RateCard(TimeStamped):
    code = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    currency = currency_field()
    history = HistoricalRecords()

    class Meta:
        ordering = ["code"]
        constraints = [supported_currency_constraint("ratecard")]

    def __str__(self) -> str:
        return f"{self.code} ({self.currency})"


class RateCardLine(models.Model):
    """Hourly rate of a role, effective-dated: rates get history, never edits."""

    rate_card = models.ForeignKey(RateCard, on_delete=models.CASCADE, related_name="lines")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="+")
    rate = models.DecimalField(**RATE, validators=[MinValueValidator(0)])
    effective_from = models.DateField()
    effective_to = models.DateField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["rate_card", "role", "effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["rate_card", "role", "effective_from"], name="billing_ratecardline_unique_start"
            ),
            models.CheckConstraint(condition=Q(rate__gte=0), name="billing_ratecardline_rate_non_negative"),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gte=F("effective_from")),
                name="billing_ratecardline_period_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rate_card.code} {self.role.code} {self.rate} from {self.effective_from}"


class TaxRule(models.Model):
    """(entity country, client relation, client VAT-registered) → tax category and rate.

    `entity_country` is an ISO code or `EU` (any member state); the most specific
    matching rule wins (see billing.services.tax).
    """

    class Relation(models.TextChoices):
        DOMESTIC = "domestic", "Same country"
        EU_OTHER = "eu_other", "Another EU member state"
        EXPORT = "export", "Outside the entity's VAT area"
        ANY = "any", "Any client"

    class Category(models.TextChoices):
        STANDARD = "S", "S – standard rate"
        REVERSE_CHARGE = "AE", "AE – reverse charge"
        OUTSIDE_SCOPE = "O", "O – outside the scope of VAT"
        EXEMPT = "E", "E – exempt"
        ZERO = "Z", "Z – zero rated"

    entity_country = models.CharField(max_length=2, help_text="ISO code, or EU for any member state.")
    client_relation = models.CharField(max_length=10, choices=Relation.choices)
    client_country = models.CharField(
        max_length=2, blank=True, default="", help_text="Optional: only clients in this country."
    )
    client_vat_registered = models.BooleanField(
        null=True, blank=True, help_text="Empty: any client; yes/no: only clients with/without a valid VAT id."
    )
    category = models.CharField(max_length=2, choices=Category.choices)
    rate = models.DecimalField(**PERCENT, validators=[MinValueValidator(0)])
    legal_note = models.CharField(max_length=300, blank=True, default="")
    active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["entity_country", "client_relation"]
        constraints = [
            models.CheckConstraint(condition=Q(rate__gte=0) & Q(rate__lte=100), name="billing_taxrule_rate_range"),
            models.UniqueConstraint(
                fields=["entity_country", "client_relation", "client_country", "client_vat_registered"],
                condition=Q(active=True),
                name="billing_taxrule_unique_active",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.entity_country} → {self.get_client_relation_display()}: {self.category} {self.rate}%"


class FxRate(models.Model):
    """1 `from_currency` = `rate` × `to_currency` on `date`."""

    from_currency = currency_field()
    to_currency = currency_field()
    date = models.DateField()
    rate = models.DecimalField(**FX)
    history = HistoricalRecords()

    class Meta:
        verbose_name = "FX rate"
        ordering = ["from_currency", "to_currency", "-date"]
        constraints = [
            models.UniqueConstraint(fields=["from_currency", "to_currency", "date"], name="billing_fxrate_unique"),
            models.CheckConstraint(condition=Q(rate__gt=0), name="billing_fxrate_positive"),
            models.CheckConstraint(condition=~Q(from_currency=F("to_currency")), name="billing_fxrate_distinct_pair"),
            supported_currency_constraint("fxrate", "from_currency"),
            supported_currency_constraint("fxrate", "to_currency"),
        ]

    def __str__(self) -> str:
        return f"1 {self.from_currency} = {self.rate} {self.to_currency} on {self.date}"
