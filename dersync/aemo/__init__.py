"""Client for AEMO's WEM DER Register: OAuth tokens, pacing, transport, the NMI and Installation APIs.

Public names: `AemoClient` (what the engine uses), `AemoResponse`/`AemoProblem` (what it reads),
`Pacer` (to share one request budget), and the lower layers for tests and tools.
"""

from .auth import TokenProvider
from .client import AemoClient
from .installation_api import InstallationApi
from .nmi_api import NmiApi
from .pacing import Pacer
from .responses import AemoProblem, AemoResponse, parse_response
from .transport import Transport, TransportStats, classify_status, encode_body

__all__ = [
    "AemoClient",
    "AemoProblem",
    "AemoResponse",
    "InstallationApi",
    "NmiApi",
    "Pacer",
    "TokenProvider",
    "Transport",
    "TransportStats",
    "classify_status",
    "encode_body",
    "parse_response",
]
