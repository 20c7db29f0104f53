"""The two helpers test_manifests relies on catch what they claim to (so a green run means something)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.deploy.kustomize_lite import KustomizeError, render
from tests.unit.deploy.openapi_lite import UnsupportedSchema, validate

KUSTOMIZATION = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  A: '1'\n"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["replicas"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 1},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "size": {
                    "x-kubernetes-int-or-string": True,
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                },
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "items": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"n": {"type": "string"}}},
                },
            },
            "oneOf": [{"required": ["mode"]}, {"required": ["size"]}],
        }
    },
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_validator_accepts_a_valid_document() -> None:
    doc = {"spec": {"replicas": 2, "size": "10Gi", "config": {"any": {"thing": 1}}, "labels": {"a": "b"}}}
    assert validate(doc, SCHEMA) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"mode": "a"}, "missing required field 'replicas'"),
        ({"replicas": "2", "mode": "a"}, "expected integer"),
        ({"replicas": True, "mode": "a"}, "expected integer"),
        ({"replicas": 0, "mode": "a"}, "minimum"),
        ({"replicas": 1, "mode": "c"}, "is not one of"),
        ({"replicas": 1, "mode": "a", "typo": 1}, "spec.typo: unknown field"),
        ({"replicas": 1, "size": 1.5}, "integer or a string"),
        ({"replicas": 1, "mode": "a", "labels": {"a": 1}}, "spec.labels.a: expected string"),
        ({"replicas": 1, "mode": "a", "items": [{"m": "x"}]}, "spec.items[0].m: unknown field"),
        ({"replicas": 1}, "matches 0 of oneOf"),
        ({"replicas": 1, "mode": "a", "size": 1}, "matches 2 of oneOf"),
    ],
)
def test_validator_reports(spec: dict[str, Any], message: str) -> None:
    errors = validate({"spec": spec}, SCHEMA)
    assert any(message in e for e in errors), errors


def test_validator_refuses_keywords_it_does_not_implement() -> None:
    with pytest.raises(UnsupportedSchema):
        validate({}, {"type": "object", "not": {"required": ["a"]}})


def test_render_resolves_resources_patches_images_and_replicas(tmp_path: Path) -> None:
    deployment = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  replicas: 2\n"
        "  template:\n    spec:\n      containers:\n        - name: d\n          image: app:latest\n"
    )
    write(
        tmp_path,
        {
            "base/kustomization.yaml": KUSTOMIZATION + "namespace: ns\nresources: [c.yaml, d.yaml]\n",
            "base/c.yaml": CONFIG_MAP,
            "base/d.yaml": deployment,
            "overlay/kustomization.yaml": KUSTOMIZATION
            + "resources: [../base]\nimages: [{name: app, newTag: v1}]\nreplicas: [{name: d, count: 1}]\n"
            + "patches:\n  - path: p.yaml\n"
            + "  - target: {kind: Deployment}\n    patch: '[{op: add, path: /spec/paused, value: true}]'\n",
            "overlay/p.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  B: '2'\n",
        },
    )
    result = render(tmp_path / "overlay")
    assert result.get("ConfigMap", "c")["data"] == {"A": "1", "B": "2"}
    d = result.get("Deployment", "d")
    assert d["metadata"]["namespace"] == "ns"
    assert d["spec"]["replicas"] == 1
    assert d["spec"]["paused"] is True
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "app:v1"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"kustomization.yaml": KUSTOMIZATION + "resources: [missing.yaml]\n"}, "does not exist"),
        ({"kustomization.yaml": KUSTOMIZATION + "resources: [../nowhere]\n"}, "does not exist"),
        (
            {
                "kustomization.yaml": KUSTOMIZATION + "resources: [c.yaml]\npatches: [{path: p.yaml}]\n",
                "c.yaml": CONFIG_MAP,
                "p.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n",
            },
            "matches no object",
        ),
        (
            {
                "kustomization.yaml": KUSTOMIZATION + "resources: [c.yaml]\n"
                "patches: [{target: {kind: ConfigMap}, patch: '[{op: replace, path: /data/Z, value: x}]'}]\n",
                "c.yaml": CONFIG_MAP,
            },
            "no such path",
        ),
        (
            {"kustomization.yaml": KUSTOMIZATION + "resources: [c.yaml, c.yaml]\n", "c.yaml": CONFIG_MAP},
            "duplicate",
        ),
        ({"kustomization.yaml": KUSTOMIZATION + "commonLabels: {a: b}\n"}, "not supported"),
        (
            {
                "kustomization.yaml": KUSTOMIZATION + "resources: [c.yaml]\nimages: [{name: x, newTag: y}]\n",
                "c.yaml": CONFIG_MAP,
            },
            "used by no container",
        ),
        ({"kustomization.yaml": KUSTOMIZATION + "resources: [.]\n"}, "cycle"),
    ],
)
def test_render_refuses(tmp_path: Path, files: dict[str, str], message: str) -> None:
    write(tmp_path, files)
    with pytest.raises(KustomizeError, match=message):
        render(tmp_path)
