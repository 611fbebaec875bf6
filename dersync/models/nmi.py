"""The NMI record (WEM DER NMI API v1): one connection point and where it sits in the network."""

from __future__ import annotations

from pydantic import Field

from dersync.models.base import AemoModel, Nmi, ShortText
from dersync.models.installation import SERVER_OWNED_FIELDS


class NmiDetails(AemoModel):
    """Body of POST/PUT /nmi-details. All five fields are mandatory for a create."""

    nmi: Nmi
    substation: ShortText = Field(min_length=1)
    post_code: str = Field(pattern=r"^[0-9]{4}$")  # ASCII digits: `\d` takes any script's
    tni: ShortText = Field(min_length=1)
    status: ShortText = Field(min_length=1)
    # server-owned, accepted on input (an export from AEMO carries them) and never sent
    record_creation_date: str | None = None
    record_update_date: str | None = None


#: An NMI record carries only the record dates of the one list.
SERVER_OWNED_NMI_FIELDS = SERVER_OWNED_FIELDS & {"recordCreationDate", "recordUpdateDate"}
