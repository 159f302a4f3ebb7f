"""`manage.py peppol_simulator`: run the Peppol access-point simulator (billing.access_point.simulator)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from billing.access_point.simulator import PeppolSimulator


class Command(BaseCommand):
    help = "Run the Peppol access-point provider simulator (SMP look-up, rejections with Peppol codes, receipts)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8766)
        parser.add_argument("--token", default="", help="Require this bearer token.")
        parser.add_argument("--callback-url", default="http://127.0.0.1:8000/api/v1/webhooks/peppol/",
                            help="Where the signed delivery receipts are POSTed.")
        parser.add_argument("--webhook-secret", default="", help="Signs the receipts (PEPPOL_AP_WEBHOOK_SECRET).")
        parser.add_argument("--unregistered", action="append", default=[],
                            help="A receiver id the SMP does not know (PEPPOL:NOT_SERVICED); repeatable.")
        parser.add_argument("--reject", action="append", default=[],
                            help="A receiver id whose access point rejects every document; repeatable.")
        parser.add_argument("--reject-rate", type=float, default=0.0, help="Share of documents rejected, 0..1.")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--verbose", action="store_true")

    def handle(self, *args, **options):
        simulator = PeppolSimulator(
            options["host"], options["port"], verbose=options["verbose"], token=options["token"],
            callback_url=options["callback_url"], webhook_secret=options["webhook_secret"],
            unregistered=options["unregistered"], reject_receivers=options["reject"],
            reject_rate=options["reject_rate"], seed=options["seed"],
        )
        self.stdout.write(f"Peppol access-point simulator on {simulator.url}; receipts to "
                          f"{options['callback_url'] or '(kept)'}; Ctrl-C stops.")
        try:
            simulator.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            simulator.server.server_close()
