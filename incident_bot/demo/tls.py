"""A throwaway certificate authority for the HTTPS stand-ins (PagerDuty, GitHub, Jira, Linear).

Real clients refuse plain HTTP (``pagerduty``) or should be tested with TLS as they run in production
(the trackers' ``httpx`` client): each stand-in serves a certificate for 127.0.0.1 and localhost, issued by
a ``trustme`` CA made for that stand-in alone. Clients trust it through :attr:`ThrowawayTLS.ca_pem_path`
(``PAGERDUTY_CA_BUNDLE`` / ``TRACKER_CA_BUNDLE``) or :meth:`ThrowawayTLS.client_context`.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path


class ThrowawayTLS:
    """A CA (its PEM in a temporary directory, removed with this object) and a server context it signed."""

    def __init__(self, prefix: str = "standin-") -> None:
        import trustme  # here, not at import time: only a running stand-in needs it

        self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
        ca = trustme.CA()
        self.ca_pem_path = str(Path(self._tmp.name) / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_pem_path)
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self.server_context)

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA."""
        return ssl.create_default_context(cafile=self.ca_pem_path)
