"""Creating the DynamoDB table from its one definition, ``infra/table.yaml``.

The CloudFormation resource's ``Properties`` are CreateTable's parameters (CloudFormation
mirrors the API) except for the few that CreateTable does not take, which are applied after
the table is ACTIVE.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import yaml

# Properties CloudFormation takes that CreateTable takes too, with the same shape.
_CREATE_TABLE = frozenset(
    {
        "TableName",
        "AttributeDefinitions",
        "KeySchema",
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
        "BillingMode",
        "ProvisionedThroughput",
        "StreamSpecification",
        "Tags",
        "TableClass",
        "DeletionProtectionEnabled",
    }
)
# Set by a separate call once the table exists.
_AFTERWARDS = frozenset({"TimeToLiveSpecification"})


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation's short forms (``!Ref X``, ``!GetAtt A.B``, ``!Sub …``) as the long
    forms (``{"Ref": "X"}``, ``{"Fn::GetAtt": ["A", "B"]}``, ``{"Fn::Sub": …}``)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def table_template() -> dict[str, Any]:
    """``infra/table.yaml``, parsed."""
    text = resources.files("tarry.infra").joinpath("table.yaml").read_text()
    template = yaml.load(text, Loader=_CloudFormationLoader)
    if not isinstance(template, dict):
        raise ValueError("infra/table.yaml is not a CloudFormation template")
    return template


def table_properties(name: str) -> dict[str, Any]:
    """The table resource's Properties, with ``!Ref TableName`` resolved to ``name``."""
    props = table_template()["Resources"]["Table"]["Properties"]
    resolved: dict[str, Any] = _resolve(props, {"TableName": name})
    return resolved


def _resolve(value: Any, refs: dict[str, str]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in refs:
            return refs[value["Ref"]]
        return {k: _resolve(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, refs) for v in value]
    return value


def create_table_request(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """CreateTable's parameters for table ``name``, and the properties to set afterwards."""
    props = table_properties(name)
    unknown = set(props) - _CREATE_TABLE - _AFTERWARDS
    if unknown:
        raise ValueError(
            f"infra/table.yaml uses {sorted(unknown)}: teach tarry.runtime.store.dynamodb_table "
            "how to apply them"
        )
    create = {k: v for k, v in props.items() if k in _CREATE_TABLE}
    after = {k: v for k, v in props.items() if k in _AFTERWARDS}
    return create, after


async def create_table(client: Any, name: str, poll_seconds: float = 0.2) -> bool:
    """Create table ``name`` as ``infra/table.yaml`` defines it and wait until it is ACTIVE.
    Idempotent: an existing table is left as it is. True if it was created now."""
    create, after = create_table_request(name)
    created = True
    try:
        await client.create_table(**create)
    except client.exceptions.ResourceInUseException:
        created = False
    while True:
        table = (await client.describe_table(TableName=name))["Table"]
        indexes = table.get("GlobalSecondaryIndexes", [])
        if table["TableStatus"] == "ACTIVE" and all(
            i.get("IndexStatus", "ACTIVE") == "ACTIVE" for i in indexes
        ):
            break
        await asyncio.sleep(poll_seconds)
    ttl = after.get("TimeToLiveSpecification")
    if created and ttl:
        await client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    return created


async def delete_table(client: Any, name: str) -> None:
    """Delete table ``name`` (tests; there is no CLI command for it on purpose)."""
    try:
        await client.delete_table(TableName=name)
    except client.exceptions.ResourceNotFoundException:
        return


__all__ = ["create_table", "create_table_request", "delete_table", "table_properties"]
