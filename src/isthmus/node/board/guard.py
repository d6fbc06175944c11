"""Who may see the board and which forms count: the API's token as a sign-in, CSRF tokens, one use per form.

A browser cannot send the API's ``Authorization: Bearer`` header on a link, so an operator signs in
once with the same token and gets a session cookie (HttpOnly, SameSite=Strict) that is an HMAC of
the token and its expiry: a changed token or an expired session sends the browser back to sign-in.
Without a token (the node bound to loopback) the board is open like the API, but only under a
loopback host name, so a web page that rebinds its own DNS name to 127.0.0.1 is refused.

Every form carries a fresh CSRF token (a random nonce and its HMAC under a per-process secret);
a POST is refused unless its token verifies and any ``Origin`` it names is the board's own. A nonce
is spent when its form is handled, so the same form submitted twice acts once.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict

SESSION_COOKIE = "isthmus_board"
SESSION_SECONDS = 8 * 3600
_SPENT_KEPT = 10_000


class Guard:
    def __init__(self, token: str | None, listen_port: int | None):
        self.token = token
        self.listen_port = listen_port
        self._secret = secrets.token_bytes(32)
        self._spent: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    # -- sign-in ------------------------------------------------------------------------------------

    def session_for(self, given: str, now: float | None = None) -> str | None:
        """A session cookie value if ``given`` is the node's token."""
        if self.token is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        expires = int((now or time.time()) + SESSION_SECONDS)
        return f"{expires}.{self._session_mac(expires)}"

    def signed_in(self, headers: dict, cookies: dict, now: float | None = None) -> bool:
        if self.token is None:
            return True
        if hmac.compare_digest(headers.get("authorization", "").encode(), f"Bearer {self.token}".encode()):
            return True
        expires, _, mac = cookies.get(SESSION_COOKIE, "").partition(".")
        if not expires.isdigit() or int(expires) < (now or time.time()):
            return False
        return hmac.compare_digest(mac.encode(), self._session_mac(int(expires)).encode())

    def _session_mac(self, expires: int) -> str:
        return hmac.new(self.token.encode(), f"board-session:{expires}".encode(), hashlib.sha256).hexdigest()

    def host_allowed(self, host: str) -> bool:
        """Without a token, only loopback names (DNS rebinding); with one, the token decides."""
        if self.token is not None:
            return True
        name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        return _loopback(name.strip("[]")) and (self.listen_port is None or port == str(self.listen_port))

    # -- forms --------------------------------------------------------------------------------------

    def csrf_token(self) -> str:
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._form_mac(nonce)}"

    def check_form(self, token: str, origin: str | None, host: str) -> str:
        """``fresh`` for a valid, unused token (now spent), ``spent`` for a valid token used before,
        ``forged`` for anything else."""
        nonce, _, mac = token.partition(".")
        if not nonce or not hmac.compare_digest(mac.encode(), self._form_mac(nonce).encode()):
            return "forged"
        if origin is not None and origin.split("://", 1)[-1] != host:
            return "forged"
        with self._lock:
            if nonce in self._spent:
                return "spent"
            self._spent[nonce] = None
            if len(self._spent) > _SPENT_KEPT:
                self._spent.popitem(last=False)
        return "fresh"

    def _form_mac(self, nonce: str) -> str:
        return hmac.new(self._secret, f"board-form:{nonce}".encode(), hashlib.sha256).hexdigest()


def _loopback(name: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): the names a node's loopback listen may have."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
