"""Request rates per user and per anonymous client, and the client address behind proxies."""

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


def client_address(request) -> str:
    """Return the client's IP address, read from X-Forwarded-For only behind trusted proxies.

    With TRUSTED_PROXY_COUNT = N, the Nth address from the right of X-Forwarded-For is
    the client, because each trusted proxy appends the address it received the request
    from. Addresses further left are whatever the client wrote, so they are never used.
    """
    remote_address = request.META.get("REMOTE_ADDR", "")
    proxy_count = settings.TRUSTED_PROXY_COUNT
    forwarded_for = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxy_count <= 0 or not forwarded_for:
        return remote_address
    addresses = [address.strip() for address in forwarded_for.split(",") if address.strip()]
    if not addresses:
        return remote_address
    return addresses[-min(proxy_count, len(addresses))]


class SettingsRateMixin:
    """Read the rate from settings.API_THROTTLE_RATES, and the address from client_address.

    DRF creates the throttles for every request, so a changed setting applies at once.
    """

    def get_rate(self) -> str | None:
        return settings.API_THROTTLE_RATES.get(self.scope)

    def get_ident(self, request) -> str:
        return client_address(request)


class AnonymousClientThrottle(SettingsRateMixin, AnonRateThrottle):
    """Limits anonymous requests per client address."""

    scope = "anon"


class UserThrottle(SettingsRateMixin, UserRateThrottle):
    """Limits authenticated requests per user; anonymous ones fall to the client address."""

    scope = "user"
