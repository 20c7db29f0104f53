"""A minimal, offline stand-in for `kustomize build`, enough for the manifests under deploy/k8s.

It supports exactly the kustomization fields those manifests use (`resources`, `namespace`, `images`,
`replicas`, `patches` as strategic-merge or JSON 6902 patches) and refuses anything else, so a
manifest that starts using another feature fails the tests loudly instead of being half-rendered.
What it checks on the way: every resource entry is an existing file (inside the kustomization's
folder, like kustomize's default load restrictor) or a folder with a kustomization; no cycles; no two
objects with the same identity; every patch, image and replica entry matches at least one object.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

Obj = dict[str, Any]

KUSTOMIZATION_API = "kustomize.config.k8s.io/v1beta1"
SUPPORTED_FIELDS = frozenset(
    {"apiVersion", "kind", "namespace", "resources", "images", "replicas", "patches"}
)
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PriorityClass",
        "StorageClass",
        "PersistentVolume",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
)
POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}
REPLICATED_KINDS = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class KustomizeError(Exception):
    """The kustomization cannot be rendered (what `kustomize build` would also refuse)."""


@dataclass
class Rendered:
    root: Path
    objects: list[Obj]
    files: set[Path] = field(default_factory=set)  # every file read: kustomizations, resources, patches

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        if len(found) != 1:
            raise KeyError(f"{kind}/{name}: {len(found)} objects in {self.root}")
        return found[0]


def load_documents(path: Path) -> list[Any]:
    """Every non-empty YAML document of a file."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.load_all(stream, Loader=_Loader) if doc is not None]


def load_objects(path: Path) -> list[Obj]:
    """The Kubernetes objects of a manifest file; each must have apiVersion, kind and metadata.name."""
    objects: list[Obj] = []
    for index, doc in enumerate(load_documents(path)):
        if not isinstance(doc, dict):
            raise KustomizeError(f"{path} document {index}: not a mapping")
        for key in ("apiVersion", "kind"):
            if not isinstance(doc.get(key), str):
                raise KustomizeError(f"{path} document {index}: no {key}")
        metadata = doc.get("metadata")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
            raise KustomizeError(f"{path} document {index}: no metadata.name")
        objects.append(doc)
    return objects


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def identity(obj: Obj) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (group_of(obj["apiVersion"]), obj["kind"], meta.get("namespace", ""), meta["name"])


def pod_spec(obj: Obj) -> Obj | None:
    """The pod spec of a workload object, or None for other kinds."""
    keys = POD_TEMPLATE_PATHS.get(obj["kind"])
    if keys is None:
        return None
    node: Any = obj
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def containers(obj: Obj) -> Iterator[Obj]:
    spec = pod_spec(obj)
    if spec is not None:
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def find_kustomization(directory: Path) -> Path:
    candidates = [directory / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")]
    existing = [c for c in candidates if c.is_file()]
    if len(existing) != 1:
        raise KustomizeError(f"{directory}: expected exactly one kustomization file, found {len(existing)}")
    return existing[0]


def render(directory: Path, _stack: tuple[Path, ...] = ()) -> Rendered:
    """Render the kustomization in `directory` (resolving nested kustomizations)."""
    directory = directory.resolve()
    if directory in _stack:
        raise KustomizeError(f"cycle: {' -> '.join(map(str, (*_stack, directory)))}")
    kfile = find_kustomization(directory)
    docs = load_documents(kfile)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise KustomizeError(f"{kfile}: expected one mapping")
    spec: Obj = docs[0]
    if spec.get("apiVersion") != KUSTOMIZATION_API or spec.get("kind") != "Kustomization":
        raise KustomizeError(f"{kfile}: apiVersion/kind must be {KUSTOMIZATION_API} Kustomization")
    unsupported = set(spec) - SUPPORTED_FIELDS
    if unsupported:
        raise KustomizeError(f"{kfile}: fields not supported by this renderer: {sorted(unsupported)}")

    rendered = Rendered(directory, [], {kfile})
    for entry in spec.get("resources", []):
        _add_resource(rendered, directory, entry, (*_stack, directory))
    seen: set[tuple[str, str, str, str]] = set()
    for obj in rendered.objects:
        key = identity(obj)
        if key in seen:
            raise KustomizeError(f"{kfile}: duplicate object {key}")
        seen.add(key)

    for patch in spec.get("patches", []):
        _apply_patch(rendered, directory, patch)
    if "namespace" in spec:
        for obj in rendered.objects:
            if obj["kind"] not in CLUSTER_SCOPED_KINDS:
                obj["metadata"]["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        _apply_image(rendered, image)
    for replica in spec.get("replicas", []):
        _apply_replicas(rendered, replica)
    return rendered


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _add_resource(rendered: Rendered, directory: Path, entry: Any, stack: tuple[Path, ...]) -> None:
    if not isinstance(entry, str) or "://" in entry or entry.startswith(("github.com/", "git@")):
        raise KustomizeError(f"{directory}: resource {entry!r} is not a local path")
    path = (directory / entry).resolve()
    if path.is_dir():
        sub = render(path, stack)
        rendered.objects.extend(copy.deepcopy(sub.objects))
        rendered.files |= sub.files
    elif path.is_file():
        if not _inside(path, directory):
            raise KustomizeError(f"{directory}: file {entry!r} is outside the kustomization root")
        rendered.objects.extend(load_objects(path))
        rendered.files.add(path)
    else:
        raise KustomizeError(f"{directory}: resource {entry!r} does not exist")


def _matches(obj: Obj, target: Obj) -> bool:
    unknown = set(target) - {"group", "version", "kind", "name", "namespace", "labelSelector"}
    if unknown:
        raise KustomizeError(f"patch target fields not supported: {sorted(unknown)}")
    group, _, version = obj["apiVersion"].rpartition("/")
    meta = obj["metadata"]
    checks = [
        ("group", group),
        ("version", version),
        ("kind", obj["kind"]),
        ("namespace", meta.get("namespace", "")),
    ]
    if any(key in target and target[key] != value for key, value in checks):
        return False
    if "name" in target and not re.fullmatch(target["name"], meta["name"]):
        return False
    if "labelSelector" in target:
        labels = meta.get("labels", {})
        for term in str(target["labelSelector"]).split(","):
            key, _, value = term.partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
    return True


def _apply_patch(rendered: Rendered, directory: Path, entry: Any) -> None:
    if not isinstance(entry, dict) or ("path" in entry) == ("patch" in entry):
        raise KustomizeError(f"{directory}: a patch needs exactly one of `path` and `patch`: {entry!r}")
    unknown = set(entry) - {"path", "patch", "target"}
    if unknown:
        raise KustomizeError(f"{directory}: patch fields not supported: {sorted(unknown)}")
    if "path" in entry:
        path = (directory / entry["path"]).resolve()
        if not path.is_file() or not _inside(path, directory):
            raise KustomizeError(f"{directory}: patch file {entry['path']!r} does not exist in the root")
        rendered.files.add(path)
        docs = load_documents(path)
    else:
        docs = [doc for doc in yaml.load_all(entry["patch"], Loader=_Loader) if doc is not None]
    if len(docs) != 1:
        raise KustomizeError(f"{directory}: a patch must hold one document: {entry!r}")
    body = docs[0]
    target = entry.get("target")
    if isinstance(body, list):
        if target is None:
            raise KustomizeError(f"{directory}: a JSON 6902 patch needs a target")
        targets = [o for o in rendered.objects if _matches(o, target)]
    elif isinstance(body, dict):
        if target is None:
            meta = body.get("metadata", {})
            target = {"kind": body.get("kind"), "name": re.escape(str(meta.get("name")))}
            if "apiVersion" in body:
                target["group"] = group_of(body["apiVersion"])
        targets = [o for o in rendered.objects if _matches(o, target)]
    else:
        raise KustomizeError(f"{directory}: a patch must be a mapping or a list of operations")
    if not targets:
        raise KustomizeError(f"{directory}: patch {entry!r} matches no object")
    for obj in targets:
        if isinstance(body, list):
            json6902(obj, body)
        else:
            patched = strategic_merge(obj, {k: v for k, v in body.items() if k not in ("apiVersion", "kind")})
            patched["metadata"]["name"] = obj["metadata"]["name"]
            obj.clear()
            obj.update(patched)


def strategic_merge(base: Any, patch: Any) -> Any:
    """A small strategic merge: maps merge key by key (null deletes), lists of named maps merge by name,
    any other value replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        if any(str(k).startswith("$") for k in patch):
            raise KustomizeError(f"patch directives are not supported: {sorted(patch)}")
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    named = (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in (*base, *patch))
    )
    if named:
        result = [copy.deepcopy(item) for item in base]
        for item in patch:
            index = next((i for i, old in enumerate(result) if old["name"] == item["name"]), None)
            if index is None:
                result.append(copy.deepcopy(item))
            else:
                result[index] = strategic_merge(result[index], item)
        return result
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json6902(obj: Obj, operations: list[Any]) -> None:
    """Apply JSON 6902 `add`, `replace` and `remove` operations in place (missing paths are errors)."""
    for op in operations:
        if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove"):
            raise KustomizeError(f"unsupported JSON 6902 operation: {op!r}")
        *parents, last = _pointer(str(op.get("path", "")))
        node: Any = obj
        for part in parents:
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError, TypeError) as e:
                raise KustomizeError(f"{op['path']}: no such path in {obj['kind']}") from e
        if isinstance(node, list):
            if op["op"] == "add":
                index = len(node) if last == "-" else int(last)
                node.insert(index, copy.deepcopy(op["value"]))
                continue
            if not last.isdigit() or int(last) >= len(node):
                raise KustomizeError(f"{op['path']}: no such index in {obj['kind']}")
            if op["op"] == "remove":
                del node[int(last)]
            else:
                node[int(last)] = copy.deepcopy(op["value"])
        elif isinstance(node, dict):
            if op["op"] != "add" and last not in node:
                raise KustomizeError(f"{op['path']}: no such path in {obj['kind']}")
            if op["op"] == "remove":
                del node[last]
            else:
                node[last] = copy.deepcopy(op["value"])
        else:
            raise KustomizeError(f"{op['path']}: parent is not a map or list")


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """`name[:tag][@digest]` into its parts (a registry port is part of the name)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _apply_image(rendered: Rendered, entry: Obj) -> None:
    unknown = set(entry) - {"name", "newName", "newTag", "digest"}
    if unknown or "name" not in entry:
        raise KustomizeError(f"images entry not supported: {entry!r}")
    hits = 0
    for obj in rendered.objects:
        for container in containers(obj):
            name, tag, digest = split_image(container["image"])
            if name != entry["name"]:
                continue
            hits += 1
            name = entry.get("newName", name)
            tag = str(entry["newTag"]) if "newTag" in entry else tag
            digest = entry.get("digest", digest)
            container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    if not hits:
        raise KustomizeError(f"{rendered.root}: image {entry['name']!r} is used by no container")


def _apply_replicas(rendered: Rendered, entry: Obj) -> None:
    if set(entry) != {"name", "count"} or not isinstance(entry["count"], int):
        raise KustomizeError(f"replicas entry not supported: {entry!r}")
    targets = [
        o
        for o in rendered.objects
        if o["kind"] in REPLICATED_KINDS and o["metadata"]["name"] == entry["name"]
    ]
    if not targets:
        raise KustomizeError(f"{rendered.root}: replicas for {entry['name']!r} match no workload")
    for obj in targets:
        obj["spec"]["replicas"] = entry["count"]
