"""A faithful stand-in for AEMO's OAuth, WEM DER NMI v1 and Installation v2 APIs.

Written from AEMO's published material (its WEM DER API Reference and the OpenAPI exports of the
three APIs; tests/data/aemo-openapi/ holds copies of the NMI and Installation exports), not from
any client code, so that the sync service is tested against AEMO's documented behaviour rather
than against its own assumptions. See ``app`` for the request pipeline, ``validation`` for the
error codes, ``state`` for register semantics.
"""

from .app import Simulator, create_app, run_simulator, serve_forever
from .config import DEFAULT_KNOWN_EQUIPMENT, SimulatorConfig
from .state import RegisterState, SimClock

__all__ = [
    "DEFAULT_KNOWN_EQUIPMENT",
    "RegisterState",
    "SimClock",
    "Simulator",
    "SimulatorConfig",
    "create_app",
    "run_simulator",
    "serve_forever",
]
