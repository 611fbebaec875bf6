"""Switches for the AEMO simulator.

The simulator stands in for AEMO's OAuth, WEM DER NMI v1 and Installation v2 APIs. Every switch
here exists because AEMO's published material leaves a behaviour open (response shape, token body)
or because the sync service must survive a hostile day (faults, throttling, latency); tests and the
demo flip them to prove the client copes with every documented variant.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Equipment the simulator treats as "on AEMO's approved list" for second-level validation
#: (exceptions 2023/2024). Matching is case-insensitive and ignores surrounding whitespace.
DEFAULT_KNOWN_EQUIPMENT: tuple[tuple[str, str], ...] = (
    ("Fronius", "Primo 5.0-1"),
    ("SMA", "Sunny Boy 5.0"),
    ("Tesla", "Powerwall 2"),
    ("Enphase", "IQ7PLUS-72-2-INT"),
    ("SolarEdge", "SE5000H"),
    ("GoodWe", "GW5000D-NS"),
    ("Sungrow", "SG5.0RS"),
    ("Huawei", "SUN2000-5KTL-L1"),
    ("BYD", "Battery-Box Premium HVS 10.2"),
    ("LG Energy Solution", "RESU10H"),
    ("Growatt", "MIN 5000TL-X"),
    ("Alpha ESS", "SMILE5"),
    ("Zappi", "ZAPPI-2H07UW"),
    ("Wallbox", "Pulsar Plus"),
    ("Redback", "SH5000"),
    # PV modules, so that a realistic "Solar PV" device can be Confirmed too.
    ("Jinko Solar", "JKM415M-54HL4-V"),
    ("Trina Solar", "TSM-DE09.08"),
    ("LONGi", "LR5-54HPH-410M"),
    ("REC", "REC400AA"),
    ("Canadian Solar", "CS6R-410MS"),
)

#: "500"/"503": an error answer, nothing applied. "drop": the connection is closed before the
#: request is handled. "drop_after_apply": handled (and applied), then closed without an answer.
#: "slow": handled (and applied), then answered ``slow_fault_seconds`` late, past a client's timeout.
FaultKind = Literal["500", "503", "drop", "drop_after_apply", "slow"]


class SimulatorConfig(BaseModel):
    """Everything that changes how the simulated AEMO behaves. All fields have defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- OAuth ---------------------------------------------------------------------------
    client_id: str = "dersync-demo"
    client_secret: str = Field(default="demo-secret", repr=False)
    #: When set, every call (OAuth included) must carry ``x-apikey`` (or ``?subscription-key=``)
    #: with this value, as AEMO's APIM subscription key; otherwise the header is optional.
    api_key: str | None = Field(default=None, repr=False)
    token_lifetime_seconds: int = 3599
    #: "aemo": the portal's documented body {"transactionID","acess_token","access_token_expires_in": "3599"}
    #: (misspelt key, string expiry). "standard": RFC 6749 {"access_token","token_type","expires_in"}.
    token_body_style: Literal["aemo", "standard"] = "aemo"

    # --- headers ---------------------------------------------------------------------------
    #: When set, X-initiatingParticipantID must equal it (else 403); otherwise any non-empty value.
    participant_id: str | None = None

    # --- response shape ------------------------------------------------------------------
    #: Installation API only (the NMI API is always wrapped, as its OpenAPI examples show).
    #: "wrapped": {"transactionId","data","exceptions"} (+ paging keys on the list GET).
    #: "bare": the installation object itself with "transactionId"/"exceptions" added as top-level
    #: keys; list and history GETs return a bare JSON list.
    response_shape: Literal["wrapped", "bare"] = "wrapped"
    #: In "bare" mode, also send X-Page / X-Page-Size / X-Total-Pages / X-Total-Records headers on
    #: the list GET. Off by default, so clients must detect the last page by a short page.
    bare_list_paging_headers: bool = False

    # --- limits --------------------------------------------------------------------------
    #: Strict sliding 60 s window over accepted NMI + Installation API requests. <= 0 disables.
    rate_limit_per_minute: int = 6000
    #: If set, 429 answers carry ``Retry-After`` (AEMO documents none).
    retry_after_seconds: float | None = None
    #: Request payload limit (compressed or uncompressed), per AEMO's "10 MB".
    max_payload_bytes: int = 10_000_000
    #: The batched GET accepts at most this many comma-separated NMIs.
    max_nmis_per_query: int = 100

    # --- faults and latency ----------------------------------------------------------------
    fault_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_kinds: tuple[FaultKind, ...] = ("500", "503", "drop")
    #: How late a "slow" fault answers: longer than the client's request timeout (dersync's
    #: default is 30 s), so the client gives up on a request AEMO has applied.
    slow_fault_seconds: float = Field(default=60.0, ge=0.0)
    oauth_fault_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    #: An outage: once this many NMI / Installation API requests have passed the throttle, every
    #: such request is answered 503 for ``outage_seconds`` (by the simulator's clock), nothing
    #: applied; then AEMO is back. None: no outage. OAuth stays up (it is a separate service).
    outage_after_requests: int | None = Field(default=None, ge=0)
    outage_seconds: float = Field(default=0.0, ge=0.0)
    latency_seconds: float = Field(default=0.0, ge=0.0)
    seed: int | None = None

    # --- validation ----------------------------------------------------------------------
    known_equipment: tuple[tuple[str, str], ...] = DEFAULT_KNOWN_EQUIPMENT
    #: JSON-schema level: fields not in AEMO's documented request examples are a 400 (code 1020).
    reject_unknown_fields: bool = True
    #: Installation-level fields AEMO's schema no longer accepts (400, code 1020), as when AEMO
    #: withdraws a field before the operator's own validation catches up.
    withdrawn_fields: tuple[str, ...] = ()

    # --- persistence ---------------------------------------------------------------------
    #: If set, the register is loaded from this JSON file at start and saved (at most once a
    #: second while it changes, and on stop).
    state_file: str | None = None

    @field_validator("fault_kinds")
    @classmethod
    def _kinds_not_empty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("fault_kinds must name at least one kind")
        return v
