"""`manage.py esign_simulator`: the e-signature provider simulator in the foreground (customers/esign/simulator.py)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from customers.esign.simulator import ESignSimulator


class Command(BaseCommand):
    help = "Run the e-signature provider simulator (envelopes, recipients, reminders, decline, expiry, webhooks)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8770)
        parser.add_argument("--webhook-secret", default=None, help="Default: ESIGN_WEBHOOK_SECRET.")
        parser.add_argument("--token", default=None, help="Bearer token required (default: ESIGN_API_KEY).")

    def handle(self, *args, **options) -> None:
        secret = options["webhook_secret"] if options["webhook_secret"] is not None else settings.ESIGN_WEBHOOK_SECRET
        token = options["token"] if options["token"] is not None else settings.ESIGN_API_KEY
        simulator = ESignSimulator(options["host"], options["port"], webhook_secret=secret, token=token, verbose=True)
        self.stdout.write(f"E-signature simulator on {simulator.url} (Ctrl-C to stop)")
        try:
            simulator.serve_forever()
        except KeyboardInterrupt:
            simulator.stop()
