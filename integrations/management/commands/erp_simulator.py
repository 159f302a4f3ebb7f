"""`python manage.py erp_simulator`: the ERP simulator for the demo and for trying faults by hand."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from integrations.simulator import MODES, ErpSimulator


class Command(BaseCommand):
    help = "Run the ERP simulator (stores documents, honours idempotency keys, injects faults)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--mode", choices=MODES, default="ok",
                            help="Which fault to inject on --fail-rate of the calls (mixed: any; outage: all).")
        parser.add_argument("--fail-rate", type=float, default=0.0, help="Share of calls that fail, 0..1.")
        parser.add_argument("--latency-ms", type=float, default=0.0, help="Added to every call.")
        parser.add_argument("--seed", type=int, default=None, help="Make the faults reproducible.")
        parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds of a 429.")
        parser.add_argument("--timeout-sleep", type=float, default=15.0, help="How long a 'timeout' call sleeps.")
        parser.add_argument("--token", default="", help="Require this bearer token.")
        parser.add_argument("--oauth-client", default="", help="id:secret accepted at /oauth/token.")
        parser.add_argument("--store", default="", help="Keep the documents in this JSON file.")
        parser.add_argument("--verbose", action="store_true", help="Log every request.")

    def handle(self, *args, **options):
        mode = options["mode"]
        fail_rate = options["fail_rate"]
        if fail_rate and mode == "ok":
            mode = "mixed"  # --fail-rate alone means "some of everything"
        client_id, _, secret = options["oauth_client"].partition(":")
        simulator = ErpSimulator(
            options["host"], options["port"], verbose=options["verbose"], mode=mode, fail_rate=fail_rate,
            latency_ms=options["latency_ms"], seed=options["seed"], retry_after_s=options["retry_after"],
            timeout_sleep_s=options["timeout_sleep"], token=options["token"], oauth_client_id=client_id,
            oauth_client_secret=secret, store_path=options["store"],
        )
        self.stdout.write(f"ERP simulator on {simulator.url} (mode {mode}, fail rate {fail_rate:g}); Ctrl-C stops.")
        try:
            simulator.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            simulator.server.server_close()
