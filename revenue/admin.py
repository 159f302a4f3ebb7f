from django.contrib import admin

from revenue.models import EntityAccounts


@admin.register(EntityAccounts)
class EntityAccountsAdmin(admin.ModelAdmin):
    """Billing admins set each entity's revenue journal accounts."""

    list_display = ("entity", "revenue", "billed", "wip", "deferred")
