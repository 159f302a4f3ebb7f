"""Manage integration clients: `create NAME --scopes a,b [--source psa]`, `update`, `rotate`, `revoke NAME`, `list`."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.models import IntegrationClient
from integrations.services.clients import (
    IDEMPOTENCY_KEEP_DAYS,
    SCOPES,
    idempotency_records_purge,
    integration_client_create,
    integration_client_revoke,
    integration_client_rotate,
    integration_client_update,
)
from kernel.errors import ApplicationError


class Command(BaseCommand):
    help = "Create, update, rotate, revoke or list API integration clients. The token is printed once, never stored."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a client; prints its token and webhook secret once.")
        create.add_argument("name")
        create.add_argument("--scopes", required=True, help=f"Comma-separated; known: {', '.join(SCOPES)}.")
        create.add_argument("--source", default="", help="Default source of the records it upserts, e.g. psa.")
        create.add_argument("--description", default="")
        create.add_argument("--throttle-rate", default=None, help="E.g. 1200/min (the default), 50/s.")
        update = sub.add_parser("update", help="Change scopes, throttle rate, source or description (same token).")
        update.add_argument("name")
        update.add_argument("--scopes", default=None, help="The new full list, comma-separated.")
        update.add_argument("--throttle-rate", default=None)
        update.add_argument("--source", default=None)
        update.add_argument("--description", default=None)
        revoke = sub.add_parser("revoke", help="Revoke a client's token at once.")
        revoke.add_argument("name")
        rotate = sub.add_parser("rotate", help="Issue a new token; the old one stops working at once.")
        rotate.add_argument("name")
        sub.add_parser("list", help="List clients with their scopes and state.")
        sub.add_parser("scopes", help="List the known scopes.")
        purge = sub.add_parser("purge-keys", help="Forget Idempotency-Key records older than --days.")
        purge.add_argument("--days", type=int, default=IDEMPOTENCY_KEEP_DAYS)

    def handle(self, *args, **options) -> None:
        action = options["action"].replace("-", "_")
        try:
            getattr(self, f"_{action}")(options)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc

    def _create(self, options: dict) -> None:
        client, token, webhook_secret = integration_client_create(
            name=options["name"],
            scopes=options["scopes"].split(","),
            source=options["source"],
            description=options["description"],
            throttle_rate=options["throttle_rate"],
        )
        self.stdout.write(f"Created integration client {client.name} (service user {client.user.username}).")
        self.stdout.write(f"Scopes: {', '.join(client.scopes)}")
        self.stdout.write("Store these now; they are not shown again:")
        self.stdout.write(f"token: {token}")
        self.stdout.write(f"webhook secret: {webhook_secret}")

    def _update(self, options: dict) -> None:
        client = integration_client_update(
            name=options["name"],
            scopes=options["scopes"].split(",") if options["scopes"] is not None else None,
            throttle_rate=options["throttle_rate"],
            source=options["source"],
            description=options["description"],
        )
        self.stdout.write(f"Updated {client.name}: scopes {', '.join(client.scopes)}; rate {client.throttle_rate}.")

    def _revoke(self, options: dict) -> None:
        client = integration_client_revoke(name=options["name"])
        self.stdout.write(f"Revoked {client.name} at {client.revoked_at:%Y-%m-%d %H:%M:%S} UTC.")

    def _rotate(self, options: dict) -> None:
        client, token = integration_client_rotate(name=options["name"])
        self.stdout.write(f"New token of {client.name} (the old one no longer works):")
        self.stdout.write(f"token: {token}")

    def _list(self, options: dict) -> None:
        clients = IntegrationClient.objects.order_by("name")
        if not clients:
            self.stdout.write("No integration clients.")
            return
        for client in clients:
            state = "active" if client.is_active else f"revoked {client.revoked_at:%Y-%m-%d}"
            used = f"{client.last_used_at:%Y-%m-%d %H:%M}" if client.last_used_at else "never"
            self.stdout.write(
                f"{client.name:<24} {state:<18} bk_{client.token_prefix}_…  last used {used:<16} "
                f"{client.throttle_rate:<10} {', '.join(client.scopes)}"
            )

    def _purge_keys(self, options: dict) -> None:
        deleted = idempotency_records_purge(older_than_days=options["days"])
        self.stdout.write(f"Forgot {deleted} idempotency key(s) older than {options['days']} days.")

    def _scopes(self, options: dict) -> None:
        for scope, meaning in SCOPES.items():
            self.stdout.write(f"{scope:<20} {meaning}")
