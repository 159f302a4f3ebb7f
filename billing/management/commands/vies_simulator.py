"""`manage.py vies_simulator`: run the EU VIES simulator (billing.vies.simulator)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from billing.vies.simulator import ViesSimulator


class Command(BaseCommand):
    help = "Run the EU VIES REST simulator (valid/invalid VAT numbers, member-state outages)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8768)
        parser.add_argument("--invalid", action="append", default=[], help="A VAT id VIES reports invalid.")
        parser.add_argument("--unavailable", action="append", default=[], help="A member state that is down.")
        parser.add_argument("--verbose", action="store_true")

    def handle(self, *args, **options):
        simulator = ViesSimulator(options["host"], options["port"], verbose=options["verbose"],
                                  invalid=options["invalid"], unavailable=options["unavailable"])
        self.stdout.write(f"VIES simulator on {simulator.url} (VIES_BASE_URL); Ctrl-C stops.")
        try:
            simulator.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            simulator.server.server_close()
