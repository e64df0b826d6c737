#!/usr/bin/env python3
"""Validate automq.rs custom resources against the generated CRDs' openAPIV3Schema.

Stricter than the API server on one point on purpose: a field the schema does not list is
an error here, where the API server would silently prune it (so a typo such as
`spec.objectStorage.bukcet` would otherwise be lost without a word). CEL rules
(x-kubernetes-validations) are not evaluated: a Rust test covers them.

    validate_crs.py [--crd-dir crds] [--expect-invalid] [--min-count N] FILE...

Each FILE (YAML, several documents allowed, `-` for stdin) may hold any objects; those in
the automq.rs group are validated, others are skipped. An automq.rs object of a kind or
version no CRD defines is an error. With --expect-invalid, every automq.rs object must be
rejected (to prove the checks are not vacuous). Exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import copy
import glob
import os
import sys
from dataclasses import dataclass

import jsonschema
import yaml

GROUP = "automq.rs"
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# RFC 1123 subdomain, which is what the API server requires of custom resource names.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


@dataclass
class Crd:
    path: str
    kind: str
    versions: dict  # version name -> compiled validator


def crd_problems(path: str, crd: dict) -> list[str]:
    """Structural checks of an apiextensions.k8s.io/v1 CRD beyond its OpenAPI schema
    (kubernetes-validate checks that part)."""
    problems = []
    if crd.get("apiVersion") != "apiextensions.k8s.io/v1" or crd.get("kind") != "CustomResourceDefinition":
        return [f"{path}: not an apiextensions.k8s.io/v1 CustomResourceDefinition"]
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    if spec.get("group") != GROUP:
        problems.append(f"{path}: group is {spec.get('group')!r}, expected {GROUP!r}")
    expected_name = f"{names.get('plural')}.{spec.get('group')}"
    if crd.get("metadata", {}).get("name") != expected_name:
        problems.append(f"{path}: metadata.name must be <plural>.<group> = {expected_name}")
    versions = spec.get("versions", [])
    if sum(1 for v in versions if v.get("storage")) != 1:
        problems.append(f"{path}: exactly one version must have storage: true")
    for v in versions:
        root = v.get("schema", {}).get("openAPIV3Schema")
        if not isinstance(root, dict) or root.get("type") != "object":
            problems.append(f"{path}: version {v.get('name')} has no object openAPIV3Schema")
    return problems


def strict_schema(node: dict) -> dict:
    """Translate a Kubernetes structural schema into a JSON Schema that rejects unknown
    fields, honours `nullable`, `x-kubernetes-int-or-string` and integer formats."""
    node = copy.deepcopy(node)
    out: dict = {}
    for key, value in node.items():
        if key in ("description", "x-kubernetes-validations", "default", "example",
                   "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
                   "x-kubernetes-map-type", "x-kubernetes-embedded-resource"):
            continue
        if key == "properties":
            out[key] = {k: strict_schema(v) for k, v in value.items()}
        elif key in ("items", "not") and isinstance(value, dict):
            out[key] = strict_schema(value)
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = strict_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [strict_schema(v) for v in value]
        elif key in ("nullable", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "format"):
            continue  # handled below
        else:
            out[key] = value

    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    fmt = node.get("format")
    if out.get("type") == "integer" and fmt in ("int32", "int64"):
        low, high = INT32 if fmt == "int32" else INT64
        out.setdefault("minimum", low)
        out.setdefault("maximum", high)
    if fmt == "date-time":
        out["format"] = "date-time"
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if node.get("nullable"):
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = types + ["null"]
        elif "anyOf" in out:
            out["anyOf"] = out["anyOf"] + [{"type": "null"}]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = out["enum"] + [None]
    return out


def object_schema(crd: dict, version: dict) -> dict:
    """The schema of a whole object: the API server adds apiVersion, kind and metadata."""
    schema = strict_schema(version["schema"]["openAPIV3Schema"])
    schema["properties"] = dict(schema.get("properties", {}))
    schema["properties"]["apiVersion"] = {"const": f"{crd['spec']['group']}/{version['name']}"}
    schema["properties"]["kind"] = {"const": crd["spec"]["names"]["kind"]}
    schema["properties"]["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
            "namespace": {"type": "string", "maxLength": 63},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    schema["additionalProperties"] = False
    return schema


def load_crds(paths: list[str]) -> tuple[dict[str, Crd], list[str]]:
    crds: dict[str, Crd] = {}
    problems: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        if len(docs) != 1:
            problems.append(f"{path}: expected one CRD document, found {len(docs)}")
            continue
        crd = docs[0]
        found = crd_problems(path, crd)
        problems += found
        if found:
            continue
        versions = {}
        for version in crd["spec"]["versions"]:
            schema = object_schema(crd, version)
            try:
                jsonschema.Draft7Validator.check_schema(schema)
            except jsonschema.SchemaError as e:
                problems.append(f"{path}: version {version['name']}: schema does not compile: {e.message}")
                continue
            versions[version["name"]] = jsonschema.Draft7Validator(
                schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
        crds[crd["spec"]["names"]["kind"]] = Crd(path, crd["spec"]["names"]["kind"], versions)
    return crds, problems


def read_documents(path: str) -> list[dict]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with stream:
        return [d for d in yaml.safe_load_all(stream) if d]


def errors_of(crds: dict[str, Crd], obj: dict) -> list[str]:
    crd = crds.get(obj.get("kind"))
    if crd is None:
        return [f"no CRD defines kind {obj.get('kind')!r} in group {GROUP}"]
    version = str(obj.get("apiVersion", "")).partition("/")[2]
    validator = crd.versions.get(version)
    if validator is None:
        return [f"{crd.kind} has no version {version!r} (CRD {crd.path})"]
    found = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in found]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crd-dir", default="crds", help="directory of the CRD YAML files (*.yaml)")
    parser.add_argument("--expect-invalid", action="store_true",
                        help="succeed only if every automq.rs object is rejected")
    parser.add_argument("--min-count", type=int, default=0,
                        help="fail if fewer automq.rs objects than this were found")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()

    crd_files = sorted(glob.glob(os.path.join(args.crd_dir, "*.yaml")))
    if not crd_files:
        print(f"FAIL no CRD files in {args.crd_dir}")
        return 1
    crds, problems = load_crds(crd_files)
    for p in problems:
        print(f"FAIL CRD {p}")
    if problems:
        return 1
    print(f"ok   {len(crds)} CRDs: " + ", ".join(sorted(crds)))

    checked = failed = skipped = 0
    for path in args.files:
        for obj in read_documents(path):
            if str(obj.get("apiVersion", "")).partition("/")[0] != GROUP:
                skipped += 1
                continue
            checked += 1
            name = f"{path}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
            errors = errors_of(crds, obj)
            if args.expect_invalid:
                if errors:
                    print(f"ok   {name} rejected as expected: {errors[0]}")
                else:
                    failed += 1
                    print(f"FAIL {name} was accepted but is invalid on purpose")
            elif errors:
                failed += 1
                print(f"FAIL {name}")
                for e in errors:
                    print(f"       {e}")
            else:
                print(f"ok   {name}")
    print(f"{checked} automq.rs objects checked, {failed} failed, {skipped} other objects skipped")
    if checked < args.min_count:
        print(f"FAIL expected at least {args.min_count} automq.rs objects, found {checked}")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
