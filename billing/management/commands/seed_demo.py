"""`manage.py seed_demo [--scale N] [--seed S]`: deterministic, idempotent demo data."""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from billing.demo import DEFAULT_SEED, demo_logins, seed_demo
from kernel.security import mfa_enforced


class Command(BaseCommand):
    help = (
        "Create the demo firm: 3 legal entities, clients, people, contracts, projects, three months of "
        "time and expenses (Aug–Oct 2026), milestones, FX rates and one login per role. Running it again "
        "changes nothing; a larger --scale adds the missing blocks (scale 50 ≈ 250k time entries a month)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--scale", type=int, default=1, help="Multiplies clients, people and contracts.")
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Random seed (used for new data only).")

    def handle(self, *args, scale: int, seed: int, **options):
        if scale < 1:
            raise CommandError("--scale must be at least 1.")
        started = time.monotonic()
        created = seed_demo(scale=scale, seed=seed, log=self.stdout.write)
        elapsed = time.monotonic() - started
        if created:
            self.stdout.write(self.style.SUCCESS(f"Demo data seeded in {elapsed:.1f}s."))
        else:
            self.stdout.write(self.style.SUCCESS("Demo data already present: nothing to do."))
        self.stdout.write("\nDemo logins (same password for all):")
        for username, password, role in demo_logins():
            self.stdout.write(f"  {username:<12} {password:<16} {role}")
        if mfa_enforced():
            self.stdout.write(
                "Two-factor is enforced (DEBUG is off): controller and admin enrol an authenticator app at "
                "their first sign-in."
            )
        else:
            self.stdout.write(
                "DEBUG is on: these logins work without two-factor here. With DEBUG off, controller and admin "
                "must enrol an authenticator app (TOTP) at their first sign-in."
            )
