"""The portal's URLs plus `/__bench__/empty/`: an empty view behind the same middleware (the floor of a page)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from portal.urls import urlpatterns as portal_urlpatterns


def empty(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"", content_type="text/plain")


urlpatterns = [path("__bench__/empty/", empty), *portal_urlpatterns]
