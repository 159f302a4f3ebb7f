"""`manage.py tax_engine_simulator`: run the tax-engine simulator (billing.tax_engine.simulator)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from billing.tax_engine.simulator import TaxEngineSimulator


class Command(BaseCommand):
    help = "Run the Avalara/Vertex-style tax-engine simulator (US state sales tax by ship-to state, outages)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8767)
        parser.add_argument("--token", default="", help="Require this bearer token.")
        parser.add_argument("--outage", action="store_true", help="Start in an outage (503 to every call).")
        parser.add_argument("--verbose", action="store_true")

    def handle(self, *args, **options):
        simulator = TaxEngineSimulator(options["host"], options["port"], verbose=options["verbose"],
                                       token=options["token"], outage=options["outage"])
        self.stdout.write(f"Tax-engine simulator on {simulator.url}; POST /__admin/config {{\"outage\": true}} "
                          "simulates an outage; Ctrl-C stops.")
        try:
            simulator.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            simulator.server.server_close()
