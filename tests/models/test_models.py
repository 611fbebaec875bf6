"""The record models against AEMO's own documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dersync.models import Installation, NmiDetails, check_record
from dersync.settings import Enumerations

#: Copies of AEMO's OpenAPI exports, kept in the repository so these tests run in every checkout.
OPENAPI = Path(__file__).resolve().parents[1] / "data" / "aemo-openapi"


def _example(spec: str, path: str, method: str) -> dict[str, Any]:
    document = yaml.safe_load((OPENAPI / spec).read_text())
    return document["paths"][path][method]["requestBody"]["content"]["application/json"]["example"]


def _field_paths(value: Any, prefix: str = "") -> set[str]:
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            paths.add(prefix + key)
            paths |= _field_paths(item, prefix + key + ".")
    elif isinstance(value, list) and value:
        paths |= _field_paths(value[0], prefix)
    return paths


def _model_paths(model: Any, prefix: str = "") -> set[str]:
    import typing

    paths: set[str] = set()
    for field in model.model_fields.values():
        name = field.alias
        paths.add(prefix + name)
        for candidate in [field.annotation, *typing.get_args(field.annotation)]:
            for inner in [candidate, *typing.get_args(candidate)]:
                if isinstance(inner, type) and hasattr(inner, "model_fields"):
                    paths |= _model_paths(inner, prefix + name + ".")
    return paths


def test_installation_model_knows_every_field_of_aemos_example() -> None:
    """Every field in AEMO's Installation v2 request example is a field of the model, spelt the
    same (so a documented field is never refused locally as unknown)."""
    example = _example("aemo-der-register-installation-v2-openapi.yml", "/installation", "post")["data"]
    assert _field_paths(example) - _model_paths(Installation) == set()


def test_nmi_model_knows_every_field_of_aemos_example() -> None:
    """The NMI model has exactly the NMI API's documented body fields."""
    example = _example("aemo-der-register-nmi-v1-openapi.yml", "/nmi-details", "post")
    assert set(example) <= _model_paths(NmiDetails)


def _check(installation: dict[str, Any], nmi: str = "8001000001") -> list[str]:
    result = check_record(nmi, None, json.dumps(installation), Enumerations(), 10_000_000)
    return [str(p) for p in result.installation.problems]


def _valid() -> dict[str, Any]:
    from dersync.testing import installation

    return installation("8001000001")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda i: i.update(approvedCapacity="10"), "installation.approvedCapacity: Input should be a valid number"),
        (lambda i: i.update(exportLimitKW=5), "installation.exportLimitKW: is not a field AEMO knows"),
        (lambda i: i["acConnections"][0].update(equipmentType="Solar Inverter"),
         "installation.acConnections[0].equipmentType: 'Solar Inverter' is not one of AEMO's values"),
        (lambda i: i["acConnections"][0].pop("status"),
         "installation.acConnections[0].status: is mandatory and missing"),
        (lambda i: i["acConnections"][0]["devices"][0].update(count=0),
         "installation.acConnections[0].devices[0].count: Input should be greater than or equal to 1"),
        (lambda i: i.update(nmi="8001O00001"), "installation.nmi: NMI must be exactly 10 characters"),
        (lambda i: i.update(approvedCapacity=-1),
         "installation.approvedCapacity: Input should be greater than or equal to 0"),
        (lambda i: i.update(acConnections=[]), "installation.acConnections: List should have at least 1 item"),
        (lambda i: i["acConnections"].append(dict(i["acConnections"][0])),
         "nspConnectionId 'C-8001000001-1' appears twice"),
        (lambda i: i["acConnections"][0].update(commissioningDate="01/02/2024"),
         "installation.acConnections[0].commissioningDate: String should match pattern"),
        (lambda i: i.update(approvedCapacity=True), "installation.approvedCapacity: Input should be a valid number"),
    ],
)
def test_local_validation_names_the_field(change: Any, expected: str) -> None:
    """Each kind of bad input is one problem naming the field in AEMO's spelling."""
    installation = _valid()
    change(installation)
    problems = _check(installation)
    assert any(expected in p for p in problems), problems


def test_server_owned_fields_are_accepted_and_never_sent() -> None:
    """An AEMO export (with ids, stages and record dates) re-imports; those fields are stripped."""
    installation = _valid()
    installation.update(recordCreationDate="2024-01-01T00:00:00Z", installationStage="Confirmed")
    installation["acConnections"][0].update(connectionId=100001, installationStage="Conditional")
    result = check_record("8001000001", None, json.dumps(installation), Enumerations(), 10_000_000).installation
    assert result.valid
    text = json.dumps(result.payload)
    assert "connectionId" not in text.replace("nspConnectionId", "") and "installationStage" not in text


def test_content_hash_ignores_key_order_and_number_spelling() -> None:
    """Change detection is by meaning: reordered keys or 5 vs 5.0 are the same content."""
    first = _valid()
    second = json.loads(json.dumps(first))
    second["approvedCapacity"] = 10
    reordered = dict(reversed(list(second.items())))
    a = check_record("8001000001", None, json.dumps(first), Enumerations(), 10_000_000).installation
    b = check_record("8001000001", None, json.dumps(reordered), Enumerations(), 10_000_000).installation
    assert a.content_hash == b.content_hash
