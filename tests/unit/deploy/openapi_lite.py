"""Validation of custom resources against a CRD's `openAPIV3Schema`, offline and dependency-free.

`jsonschema` is not in the project's environment, and a CRD schema is a structural OpenAPI v3 subset
anyway, so this implements that subset: type, properties, required, enum, items, additionalProperties
(a schema or false), minimum/maximum, minLength/maxLength, pattern, minItems/maxItems, oneOf/anyOf/
allOf, nullable, x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields and list-type
set/map uniqueness. Unknown fields are errors where the schema lists properties, as with kubectl's
default strict field validation. CEL rules (x-kubernetes-validations) and `format` are not evaluated.
A schema keyword outside this list raises, so a CRD that needs more cannot pass silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.unit.deploy.kustomize_lite import load_documents

Schema = dict[str, Any]

ANNOTATION_KEYWORDS = frozenset(
    {
        "description",
        "default",
        "example",
        "format",
        "title",
        "x-kubernetes-validations",
        "x-kubernetes-map-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-list-type",
        "x-kubernetes-embedded-resource",
    }
)
CHECKED_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "enum",
        "items",
        "additionalProperties",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "oneOf",
        "anyOf",
        "allOf",
        "nullable",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
    }
)


class UnsupportedSchema(Exception):
    """The schema uses a keyword this validator does not implement."""


def _type_ok(value: Any, expected: str) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    raise UnsupportedSchema(f"type {expected!r}")


def validate(value: Any, schema: Schema, path: str = "", *, strict: bool = True) -> list[str]:
    """The errors of `value` against `schema` ("path: message" strings; empty when valid).

    `strict` makes fields missing from `properties` errors; it is off inside oneOf/anyOf/allOf, whose
    branches in structural schemas only state which fields are required.
    """
    unknown_keywords = set(schema) - CHECKED_KEYWORDS - ANNOTATION_KEYWORDS
    if unknown_keywords:
        raise UnsupportedSchema(f"{path or '<root>'}: keywords {sorted(unknown_keywords)}")
    where = path or "<root>"
    if value is None and schema.get("nullable"):
        return []

    errors: list[str] = []
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _type_ok(value, "integer")):
            return [f"{where}: expected an integer or a string, got {type(value).__name__}"]
    elif "type" in schema and not _type_ok(value, schema["type"]):
        return [f"{where}: expected {schema['type']}, got {type(value).__name__} ({value!r:.60})"]

    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']!r}")
    if _type_ok(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} > maximum {schema['maximum']}")
    if isinstance(value, list):
        errors.extend(_array(value, schema, where, path, strict=strict))
    if isinstance(value, dict):
        errors.extend(_object(value, schema, where, path, strict=strict))

    for branch in schema.get("allOf", []):
        errors.extend(validate(value, branch, path, strict=False))
    if "anyOf" in schema and not any(not validate(value, b, path, strict=False) for b in schema["anyOf"]):
        errors.append(f"{where}: matches none of anyOf")
    if "oneOf" in schema:
        matching = sum(1 for b in schema["oneOf"] if not validate(value, b, path, strict=False))
        if matching != 1:
            errors.append(f"{where}: matches {matching} of oneOf, expected exactly 1")
    return errors


def _array(value: list[Any], schema: Schema, where: str, path: str, *, strict: bool) -> list[str]:
    errors: list[str] = []
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{where}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{where}: more than {schema['maxItems']} items")
    if isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors.extend(validate(item, schema["items"], f"{path}[{index}]", strict=strict))
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set" and len({repr(v) for v in value}) != len(value):
        errors.append(f"{where}: duplicate items in a set")
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen = [tuple(item.get(k) for k in keys) for item in value if isinstance(item, dict)]
        if len(set(seen)) != len(seen):
            errors.append(f"{where}: duplicate map keys {keys}")
    return errors


def _object(value: dict[str, Any], schema: Schema, where: str, path: str, *, strict: bool) -> list[str]:
    errors: list[str] = []
    properties: dict[str, Schema] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            errors.append(f"{where}: missing required field {name!r}")
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    for key, item in value.items():
        child = f"{path}.{key}" if path else str(key)
        if key in properties:
            errors.extend(validate(item, properties[key], child, strict=strict))
        elif isinstance(additional, dict):
            errors.extend(validate(item, additional, child, strict=strict))
        elif additional is False or (strict and properties and not preserve and additional is not True):
            errors.append(f"{child}: unknown field")
    return errors


def load_crd_schemas(files: Iterable[Path]) -> dict[tuple[str, str], Schema]:
    """`(apiVersion, kind)` → openAPIV3Schema, for every served version of every CRD in `files`."""
    schemas: dict[tuple[str, str], Schema] = {}
    for path in files:
        for doc in load_documents(path):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served", True):
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas
