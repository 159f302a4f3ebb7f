from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customers"
    verbose_name = "Customer portal and e-signature"

    def ready(self) -> None:
        # Billing asks the signature seam; the answers live here (ADR 0096).
        from billing import signatures
        from customers import selectors

        signatures.register_signature_check(signatures.CHANGE_ORDER, selectors.change_order_is_signed)
        signatures.register_signature_check(signatures.MILESTONE, selectors.milestone_is_signed_off)
