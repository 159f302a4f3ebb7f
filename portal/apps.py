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

        # An MFA reset (a confirmed device deleted, in the admin or anywhere) ends the user's sessions.
        from django.db.models.signals import post_delete
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from kernel.security import end_sessions_on_device_removal

        post_delete.connect(end_sessions_on_device_removal, sender=TOTPDevice, dispatch_uid="portal.mfa_reset")
