from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        # Grant the role groups their permissions on models migrated after portal.0001.
        from kernel.roles import sync_roles_after_migrate

        post_migrate.connect(sync_roles_after_migrate, dispatch_uid="portal.sync_roles")

        # Two-factor: whether the user enrolled a device, noted in the session at login (kernel/security.py).
        from django.contrib.auth.signals import user_logged_in

        from kernel.security import remember_enrolment

        user_logged_in.connect(remember_enrolment, dispatch_uid="portal.remember_enrolment")
