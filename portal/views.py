"""Views of the portal shell. Thin: the numbers come from `portal.selectors`."""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET

from kernel.security import SESSION_ENROLLED_KEY, mfa_enforced, mfa_required, session_verified
from portal import mfa as mfa_services
from portal import selectors


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    """"My work": what waits for this user, one section per role."""
    user = request.user
    sections = selectors.my_work(user)
    counts = selectors.work_counts(user)
    return render(
        request,
        "portal/home.html",
        {
            "sections": sections,
            "counts": counts,
            "has_roles": bool(counts.roles),
            "admin_url": selectors.admin_index_url(user),
        },
    )


class TotpForm(forms.Form):
    token = forms.CharField(
        label="Authentication code", min_length=6, max_length=8, strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


@login_required
def mfa(request: HttpRequest) -> HttpResponse:
    """Two-factor: enrol an authenticator app (first time) or verify this session with its code."""
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        next_url = resolve_url(settings.LOGIN_REDIRECT_URL)
    enrolled = mfa_services.has_confirmed_device(request.user)
    verified = session_verified(request)
    form = TotpForm(request.POST or None)
    if request.method == "POST" and not verified:
        if form.is_valid():
            token = form.cleaned_data["token"]
            done = (mfa_services.totp_verify(request=request, token=token) if enrolled
                    else mfa_services.totp_enrolment_confirm(request=request, token=token))
            if done:
                request.session[SESSION_ENROLLED_KEY] = True
                messages.success(request, "Two-factor check passed." if enrolled
                                 else "Authenticator app enrolled: this account now signs in with a code.")
                return HttpResponseRedirect(next_url)
            form.add_error("token", "That code is not valid (or was already used). Wait for the next code and "
                                    "try again.")
    elif request.method == "POST":
        return HttpResponseRedirect(next_url)
    elif request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    return render(request, "registration/mfa.html", {
        "form": form,
        "next": next_url,
        "enrolled": enrolled,
        "verified": verified,
        "required": mfa_required(request.user),
        "enforced": mfa_enforced(),
        "enrolment": None if (enrolled or verified) else mfa_services.totp_enrolment_start(user=request.user),
    })
