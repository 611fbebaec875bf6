"""The DER installation record (WEM DER Installation API v2), as AEMO spells it on the wire.

An installation belongs to one NMI and holds AC connections (inverters, EV chargers, rotating
machines), each holding devices (panels, batteries). Field names and nesting follow the request
example of AEMO's Installation API v2. `connectionId` and `deviceId` are AEMO's ids: accepted on
input (an export from AEMO carries them), but the ids sent on a PUT come from the store's id map.
`nspConnectionId` / `nspDeviceId` are the operator's own ids; dersync requires them because they
are how it recognises equipment AEMO already holds and so never registers it twice.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from dersync.models.base import (
    AemoModel,
    Count,
    DeviceType,
    EquipmentType,
    IsoDate,
    Nmi,
    NonNegative,
    Number,
    ShortText,
)

PhaseCount = Annotated[int, Field(ge=0, le=3)]
SerialNumber = Annotated[str, Field(max_length=200)]


def _storable_id(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000): the store keeps this id as a key")
    return value


#: The operator's own equipment id: the store keeps it as a key, so no NUL (PostgreSQL text
#: cannot hold one).
OwnId = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_storable_id)]

#: The ids AEMO assigns to equipment: sent back only to name an entry AEMO already holds.
AEMO_IDS = frozenset({"connectionId", "deviceId"})
#: What AEMO stamps on its records (NMI records, installations, connections, devices, details).
AEMO_STAMPS = frozenset({"recordCreationDate", "recordUpdateDate", "recordConfirmedDate", "installationStage"})
#: Fields AEMO owns: never sent as the operator's data, never compared. The one list dersync
#: keeps (the simulator keeps its own on purpose: it is written from AEMO's documents).
SERVER_OWNED_FIELDS = AEMO_STAMPS | AEMO_IDS


class ServerOwned(AemoModel):
    """Fields AEMO sets; tolerated on input so an AEMO export can be re-imported."""

    record_creation_date: str | None = None
    record_update_date: str | None = None
    record_confirmed_date: str | None = None
    installation_stage: str | None = None


class DeviceDetails(AemoModel):
    record_creation_date: str | None = None
    record_update_date: str | None = None
    manufacturer_name: ShortText | None = None
    model_number: ShortText | None = None
    nominal_rated_capacity: NonNegative | None = None
    nominal_load_capacity: NonNegative | None = None
    nominal_storage_capacity: NonNegative | None = None


class Device(ServerOwned):
    """A DER device (PV array, battery, ...) behind an AC connection."""

    device_id: int | None = None
    nsp_device_id: OwnId
    type: DeviceType
    count: Count
    status: ShortText = Field(min_length=1)
    comments: ShortText | None = None
    details: DeviceDetails | None = None


class AcConnectionDetails(AemoModel):
    """Inverter settings and identity of the equipment at an AC connection."""

    record_creation_date: str | None = None
    record_update_date: str | None = None
    serial_numbers: list[SerialNumber] | None = Field(default=None, max_length=1000)
    manufacturer_name: ShortText | None = None
    model_number: ShortText | None = None
    equipment_series: ShortText | None = None
    equipment_standard: ShortText | None = None
    region_setting: ShortText | None = None
    additional_requirements: ShortText | None = None
    sustain_op_overvolt_limit: Number | None = None
    stop_at_over_freq: Number | None = None
    stop_at_under_freq: Number | None = None
    dred_inverter_interaction: ShortText | None = None
    inv_volt_watt_resp_mode: ShortText | None = None
    inv_watt_resp_v1: Number | None = None
    inv_watt_resp_v2: Number | None = None
    inv_watt_resp_v3: Number | None = None
    inv_watt_resp_v4: Number | None = None
    inv_watt_resp_p_at_v1: Number | None = None
    inv_watt_resp_p_at_v2: Number | None = None
    inv_watt_resp_p_at_v3: Number | None = None
    inv_watt_resp_p_at_v4: Number | None = None
    inv_volt_var_resp_mode: ShortText | None = None
    inv_var_resp_v1: Number | None = None
    inv_var_resp_v2: Number | None = None
    inv_var_resp_v3: Number | None = None
    inv_var_resp_v4: Number | None = None
    inv_var_resp_q_at_v1: Number | None = None
    inv_var_resp_q_at_v2: Number | None = None
    inv_var_resp_q_at_v3: Number | None = None
    inv_var_resp_q_at_v4: Number | None = None
    inv_reactive_power_mode: ShortText | None = None
    inv_fix_reactive_power: Number | None = None
    fix_power_factor_mode: ShortText | None = None
    fix_power_factor: Number | None = None
    fix_power_factor_quad: ShortText | None = None
    power_resp_mode: ShortText | None = None
    reference_point_p1: Number | None = None
    reference_point_p2: Number | None = None
    power_factor_at_p1: Number | None = None
    power_factor_quad_at_p1: ShortText | None = None
    power_factor_at_p2: Number | None = None
    power_factor_quad_at_p2: ShortText | None = None
    power_rate_limit_mode: ShortText | None = None
    power_ramp_rate: Number | None = None
    reactive_power_regulation: ShortText | None = None
    voltage_set_point: Number | None = None
    voltage_set_point_unit: ShortText | None = None
    deadband: Number | None = None
    droop: Number | None = None
    base_for_droop: Number | None = None
    reactive_power_source_limit: Number | None = None
    reactive_power_sink_limit: Number | None = None
    reactive_fix_power_factor: Number | None = None
    reactive_fix_power_factor_quad: ShortText | None = None
    generator_ramp_rate: ShortText | None = None
    power_ramp_gradient: Number | None = None
    frequency_sensitive_mode: ShortText | None = None
    frequency_deadband: Number | None = None
    frequency_droop: Number | None = None


class AcConnection(ServerOwned):
    """One AC connection: an inverter, EV charger or machine, and the devices behind it."""

    connection_id: int | None = None
    nsp_connection_id: OwnId
    commissioning_date: IsoDate | None = None
    equipment_type: EquipmentType
    count: Count
    status: ShortText = Field(min_length=1)
    equipment_injection_capacity: NonNegative | None = None
    equipment_withdrawal_capacity: NonNegative | None = None
    evse_ownership_status: ShortText | None = None
    authorised_agent: ShortText | None = None
    management_method: ShortText | None = None
    frequency_rate_of_change: Number | None = None
    voltage_vector_shift: Number | None = None
    inter_trip_scheme: ShortText | None = None
    neutral_voltage_displacement: Number | None = None
    details: AcConnectionDetails | None = None
    devices: list[Device] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _unique_device_ids(self) -> AcConnection:
        seen: set[str] = set()
        for device in self.devices:
            if device.nsp_device_id in seen:
                raise ValueError(
                    f"nspDeviceId {device.nsp_device_id!r} appears twice in connection "
                    f"{self.nsp_connection_id!r}"
                )
            seen.add(device.nsp_device_id)
        return self


class Installation(ServerOwned):
    """The `data` object of POST /installation and PUT /installation/{nmi}."""

    nmi: Nmi
    job_number: ShortText | None = None
    approved_capacity: NonNegative | None = None
    load_capacity: NonNegative | None = None
    export_limit_kw: NonNegative | None = Field(default=None, alias="exportLimitkW")
    import_limit_kw: NonNegative | None = None
    available_phases_count: PhaseCount | None = None
    installed_phases_count: PhaseCount | None = None
    islandable_installation: ShortText | None = None
    central_protection_control: ShortText | None = None
    under_frequency_protection: Number | None = None
    under_frequency_protection_delay: Number | None = None
    over_frequency_protection: Number | None = None
    over_frequency_protection_delay: Number | None = None
    under_voltage_protection: Number | None = None
    under_voltage_protection_delay: Number | None = None
    over_voltage_protection: Number | None = None
    over_voltage_protection_delay: Number | None = None
    sustained_over_voltage: Number | None = None
    sustained_over_voltage_delay: Number | None = None
    frequency_rate_of_change: Number | None = None
    voltage_vector_shift: Number | None = None
    inter_trip_scheme: ShortText | None = None
    neutral_voltage_displacement: Number | None = None
    other_protection: ShortText | None = None
    installer_id: ShortText | None = None
    comments: ShortText | None = None
    ac_connections: list[AcConnection] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _unique_connection_ids(self) -> Installation:
        seen: set[str] = set()
        for connection in self.ac_connections:
            if connection.nsp_connection_id in seen:
                raise ValueError(
                    f"nspConnectionId {connection.nsp_connection_id!r} appears twice"
                )
            seen.add(connection.nsp_connection_id)
        return self
