from django.apps import AppConfig


class DisputesConfig(AppConfig):
    name = "disputes"

    def ready(self) -> None:
        from billing.hooks import register_credit_note_listener
        from disputes.services import CreditNoteListener

        # The credit-note services reach disputes through this hook, never by import (ADR 0080).
        register_credit_note_listener(CreditNoteListener())
