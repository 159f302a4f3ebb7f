"""Serializers of the core API (billing reads and actions): shapes only, no rules."""

from __future__ import annotations

import calendar
import datetime

from rest_framework import serializers

from billing.models import BillingRun


class BillingRunSerializer(serializers.ModelSerializer):
    started_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    summary = serializers.JSONField(read_only=True, help_text="Invoices made, totals and exceptions (when done).")

    class Meta:
        model = BillingRun
        fields = [
            "id",
            "status",
            "period_start",
            "period_end",
            "run_date",
            "contract_codes",
            "started_by",
            "created_at",
            "started_at",
            "finished_at",
            "contracts_total",
            "contracts_done",
            "summary",
            "error",
        ]
        read_only_fields = fields


class BillingRunStartSerializer(serializers.Serializer):
    period = serializers.RegexField(
        r"^\d{4}-(0[1-9]|1[0-2])$", help_text="The month to bill, YYYY-MM; approved work up to its last day."
    )
    run_date = serializers.DateField(help_text="Issue date of the invoices.")
    contract_codes = serializers.ListField(
        child=serializers.CharField(max_length=60), required=False, default=list, max_length=1000,
        help_text="Optional contract numbers; empty: every contract.",
    )

    def validate(self, attrs: dict) -> dict:
        year, month = (int(part) for part in attrs["period"].split("-"))
        if year < 2000 or year > 2100:
            raise serializers.ValidationError({"period": ["Choose a month between 2000 and 2100."]})
        attrs["period_start"] = datetime.date(year, month, 1)
        attrs["period_end"] = datetime.date(year, month, calendar.monthrange(year, month)[1])
        return attrs
