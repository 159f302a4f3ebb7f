"""Shared field definitions and abstract model mixins (money, rates, hours, FX, percentages, timestamps)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinLengthValidator, RegexValidator
from django.db import models
from django.db.models import Q

from kernel.money import unsupported_currencies, unsupported_currency_reason

MONEY = {"max_digits": 18, "decimal_places": 2}
RATE = {"max_digits": 18, "decimal_places": 4}
HOURS = {"max_digits": 7, "decimal_places": 2}
FX = {"max_digits": 18, "decimal_places": 8}
PERCENT = {"max_digits": 7, "decimal_places": 4}

currency_validator = RegexValidator(r"^[A-Z]{3}$", "Use an ISO 4217 code such as EUR.")
country_validator = RegexValidator(r"^[A-Z]{2}$", "Use an ISO 3166 alpha-2 code such as DE.")


def supported_currency_validator(value: str) -> None:
    """Refuse currencies whose ISO 4217 minor unit is neither 0 nor 2 (KWD, BHD, …): never round at entry."""
    reason = unsupported_currency_reason(value or "")
    if reason:
        raise ValidationError(reason, code="unsupported_currency")


def currency_field(**kwargs) -> models.CharField:
    return models.CharField(
        max_length=3, validators=[currency_validator, MinLengthValidator(3), supported_currency_validator], **kwargs
    )


def supported_currency_constraint(model_name: str, field: str = "currency") -> models.CheckConstraint:
    """The database side of `supported_currency_validator` (raw writes, imports, the API alike)."""
    return models.CheckConstraint(
        condition=~Q(**{f"{field}__in": unsupported_currencies()}),
        name=f"billing_{model_name}_{field}_supported_minor_unit",
        violation_error_message=f"Unsupported currency: only ISO 4217 minor units 0 and 2 ({field}).",
    )


def country_field(**kwargs) -> models.CharField:
    return models.CharField(max_length=2, validators=[country_validator], **kwargs)


class TimeStamped(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class ExternallyIdentified(models.Model):
    """Records that other systems own: upserted by (source, external_id)."""

    source = models.CharField(max_length=30, blank=True, default="", help_text="System of origin, e.g. crm, psa.")
    external_id = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=~models.Q(external_id=""),
                name="%(app_label)s_%(class)s_unique_external_id",
            )
        ]
