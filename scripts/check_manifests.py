#!/usr/bin/env python3
"""Checks of rendered operator manifests (Helm chart output, kustomize builds), used by
scripts/check-deploy.sh:

  kube-validate -k VERSION [--skip-group G]... [--expect-invalid] FILE...
      every object against the Kubernetes OpenAPI schema of VERSION (kubernetes-validate,
      strict: unknown fields are errors). An object without a schema fails unless its API
      group is skipped (custom resources are checked by validate_crs.py instead).
  policy --watch-namespace NS|'' [--rbac|--no-rbac] [--leader-election|--no-leader-election] FILE
      the operator's RBAC is exactly what it touches (no wildcards; a ClusterRole when it
      watches all namespaces, a Role in the watched namespace otherwise; the Lease Role in
      its own namespace) and its pods run hardened (non-root, read-only root filesystem,
      no capabilities, RuntimeDefault seccomp, probes, downward-API POD_NAME/POD_NAMESPACE).
  equivalent CHART_RENDER KUSTOMIZE_BUILD
      the kustomize base installs the same objects as the chart's defaults (labels that only
      say which tool installed them aside).
  argocd REPO_ROOT FILE
      the Argo CD Applications point at paths that exist in this repository.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import os
import sys

import yaml

# What the operator touches: (apiGroup, resource) -> verbs. Keep in sync with the operator.
OPERATOR_RULES = {
    **{("automq.rs", r): {"get", "list", "watch", "patch"}
       for r in ("automqclusters", "analyticswarehouses", "topiclinks")},
    **{("automq.rs", f"{r}/status"): {"get", "patch"}
       for r in ("automqclusters", "analyticswarehouses", "topiclinks")},
    **{("automq.rs", f"{r}/finalizers"): {"update"}
       for r in ("automqclusters", "analyticswarehouses", "topiclinks")},
    # delete: a broker pool removed from the spec (operator/src/cluster/mod.rs remove_pool).
    ("apps", "statefulsets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"get", "create", "patch"},
    ("", "configmaps"): {"get", "create", "patch"},
    ("", "serviceaccounts"): {"get", "create", "patch"},
    ("", "pods"): {"get", "list", "delete"},
    ("", "secrets"): {"get"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("policy", "poddisruptionbudgets"): {"get", "create", "patch"},
    ("autoscaling", "horizontalpodautoscalers"): {"get", "create", "patch", "delete"},
}
LEASE_RULES = {("coordination.k8s.io", "leases"): {"get", "create", "update", "patch"}}
ROLE_KINDS = ("Role", "ClusterRole")


def load(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def ident(obj: dict) -> str:
    ns = obj.get("metadata", {}).get("namespace")
    return f"{obj.get('kind')}/{(ns + '/') if ns else ''}{obj.get('metadata', {}).get('name')}"


# --- kube-validate --------------------------------------------------------------------------

def cmd_kube_validate(args) -> int:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    checked = skipped = failed = 0
    for path in args.files:
        for obj in load(path):
            group = obj.get("apiVersion", "").rpartition("/")[0]
            name = f"{path}: {ident(obj)}"
            if group in args.skip_group:
                skipped += 1
                continue
            checked += 1
            try:
                kubernetes_validate.validate(obj, args.kubernetes_version, strict=True)
                error = None
            except SchemaNotFoundError:
                error = f"no Kubernetes {args.kubernetes_version} schema for {obj.get('apiVersion')} {obj.get('kind')}"
            except ValidationError as e:
                where = ".".join(str(p) for p in e.path) or "<root>"
                error = f"{where}: {e.message}"
            if args.expect_invalid:
                if error:
                    print(f"ok   {name} rejected as expected: {error}")
                else:
                    failed += 1
                    print(f"FAIL {name} was accepted but is invalid on purpose")
            elif error:
                failed += 1
                print(f"FAIL {name}: {error}")
    print(f"{checked} objects checked against Kubernetes {args.kubernetes_version}, {failed} failed, "
          f"{skipped} skipped (groups: {', '.join(args.skip_group) or 'none'})")
    return 1 if failed or checked == 0 else 0


# --- policy ---------------------------------------------------------------------------------

def rule_table(role: dict) -> tuple[dict, list[str]]:
    table: dict = {}
    problems = []
    for rule in role.get("rules", []):
        for field in ("apiGroups", "resources", "verbs"):
            if "*" in rule.get(field, []):
                problems.append(f"{ident(role)}: wildcard in {field}")
        if rule.get("resourceNames") or rule.get("nonResourceURLs"):
            problems.append(f"{ident(role)}: unexpected resourceNames/nonResourceURLs")
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                table.setdefault((group, resource), set()).update(rule.get("verbs", []))
    return table, problems


def diff_rules(name: str, got: dict, want: dict) -> list[str]:
    problems = []
    for key in sorted(set(got) | set(want)):
        g, w = got.get(key, set()), want.get(key, set())
        if g != w:
            group = key[0] or "core"
            extra, missing = sorted(g - w), sorted(w - g)
            problems.append(f"{name}: {group}/{key[1]}: extra verbs {extra}, missing verbs {missing}")
    return problems


def bound_subjects(objs: list[dict], role: dict) -> list[dict]:
    binding_kind = "ClusterRoleBinding" if role["kind"] == "ClusterRole" else "RoleBinding"
    subjects = []
    for b in objs:
        if (b["kind"] == binding_kind and b["roleRef"]["kind"] == role["kind"]
                and b["roleRef"]["name"] == role["metadata"]["name"]
                and b["metadata"].get("namespace") == role["metadata"].get("namespace")):
            subjects += b.get("subjects", [])
    return subjects


def check_rbac(objs: list[dict], deployment: dict, args) -> list[str]:
    problems = []
    roles = [o for o in objs if o["kind"] in ROLE_KINDS]
    for role in roles:
        problems += rule_table(role)[1]
    if not args.rbac:
        if roles:
            problems.append(f"rbac disabled but found {', '.join(ident(r) for r in roles)}")
        return problems

    operator_ns = deployment["metadata"].get("namespace")
    sa = deployment["spec"]["template"]["spec"].get("serviceAccountName", "default")
    lease_roles = [r for r in roles if ("coordination.k8s.io", "leases") in rule_table(r)[0]]
    operator_roles = [r for r in roles if r not in lease_roles]

    if len(operator_roles) != 1:
        return problems + [f"expected one operator (Cluster)Role, found {[ident(r) for r in operator_roles]}"]
    role = operator_roles[0]
    if args.watch_namespace:
        if role["kind"] != "Role" or role["metadata"].get("namespace") != args.watch_namespace:
            problems.append(f"watching {args.watch_namespace}: expected a Role there, found {ident(role)}")
    elif role["kind"] != "ClusterRole":
        problems.append(f"watching all namespaces: expected a ClusterRole, found {ident(role)}")
    problems += diff_rules(ident(role), rule_table(role)[0], OPERATOR_RULES)

    if args.leader_election:
        if len(lease_roles) != 1:
            problems.append(f"expected one leader-election Role, found {[ident(r) for r in lease_roles]}")
        else:
            lease = lease_roles[0]
            if lease["kind"] != "Role" or lease["metadata"].get("namespace") != operator_ns:
                problems.append(f"the Lease Role must be a Role in {operator_ns}, found {ident(lease)}")
            problems += diff_rules(ident(lease), rule_table(lease)[0], LEASE_RULES)
            roles_to_bind = [role, lease]
    else:
        if lease_roles:
            problems.append(f"leader election disabled but found {[ident(r) for r in lease_roles]}")
        roles_to_bind = [role]
    for r in roles_to_bind if not problems else []:
        subjects = bound_subjects(objs, r)
        want = {"kind": "ServiceAccount", "name": sa, "namespace": operator_ns}
        if subjects != [want]:
            problems.append(f"{ident(r)} must be bound to exactly {want}, found {subjects}")
    return problems


def env_field(container: dict, name: str) -> str | None:
    for e in container.get("env", []):
        if e["name"] == name:
            return e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    return None


def check_pod(deployment: dict, args) -> list[str]:
    name = ident(deployment)
    pod = deployment["spec"]["template"]["spec"]
    problems = []
    psc = pod.get("securityContext", {})
    if not psc.get("runAsNonRoot"):
        problems.append(f"{name}: pod securityContext.runAsNonRoot is not true")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        cname = f"{name} container {c['name']}"
        want = {
            "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
            "allowPrivilegeEscalation=false": sc.get("allowPrivilegeEscalation") is False,
            "capabilities.drop [ALL]": sc.get("capabilities", {}).get("drop") == ["ALL"],
            "no added capabilities": not sc.get("capabilities", {}).get("add"),
            "runAsNonRoot": sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True,
            "seccomp RuntimeDefault": (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
            "liveness /healthz": c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz",
            "readiness /readyz": c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz",
            "POD_NAME from metadata.name": env_field(c, "POD_NAME") == "metadata.name",
            "POD_NAMESPACE from metadata.namespace": env_field(c, "POD_NAMESPACE") == "metadata.namespace",
            "resources.requests": bool(c.get("resources", {}).get("requests")),
        }
        problems += [f"{cname}: expected {k}" for k, ok in want.items() if not ok]
        flags = " ".join(c.get("args", []))
        if args.watch_namespace and f"--watch-namespace={args.watch_namespace}" not in flags:
            problems.append(f"{cname}: expected --watch-namespace={args.watch_namespace}")
        if not args.watch_namespace and "--watch-namespace" in flags:
            problems.append(f"{cname}: unexpected {flags}")
        want_le = f"--leader-election={'true' if args.leader_election else 'false'}"
        if want_le not in flags:
            problems.append(f"{cname}: expected {want_le}")
    replicas = deployment["spec"].get("replicas", 1)
    if replicas > 1 and not args.leader_election:
        problems.append(f"{name}: {replicas} replicas without leader election")
    return problems


def cmd_policy(args) -> int:
    objs = load(args.file)
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    if len(deployments) != 1:
        print(f"FAIL {args.file}: expected one operator Deployment, found {len(deployments)}")
        return 1
    problems = check_rbac(objs, deployments[0], args) + check_pod(deployments[0], args)
    for p in problems:
        print(f"FAIL {args.file}: {p}")
    if not problems:
        scope = f"namespace {args.watch_namespace}" if args.watch_namespace else "all namespaces"
        print(f"ok   {args.file}: RBAC exact for {scope}"
              f"{' + Lease Role' if args.leader_election and args.rbac else ''}"
              f"{'' if args.rbac else ' (rbac disabled)'}, pod hardened")
    return 1 if problems else 0


# --- equivalent -----------------------------------------------------------------------------

TOOL_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version",
               "app.kubernetes.io/part-of")


def normalize(obj: dict) -> dict:
    obj = copy.deepcopy(obj)

    def strip(meta: dict) -> None:
        labels = meta.get("labels", {})
        for key in TOOL_LABELS:
            labels.pop(key, None)
        if not labels:
            meta.pop("labels", None)
        annotations = meta.get("annotations", {})
        annotations.pop("helm.sh/resource-policy", None)
        if not annotations:
            meta.pop("annotations", None)

    strip(obj.setdefault("metadata", {}))
    if obj.get("kind") == "CustomResourceDefinition":
        # The chart labels its CRDs with the release; the content must match, not the labels.
        obj["metadata"].pop("labels", None)
    template = obj.get("spec", {}).get("template")
    if isinstance(template, dict) and "metadata" in template:
        strip(template["metadata"])
    return obj


def cmd_equivalent(args) -> int:
    chart = {ident(o): normalize(o) for o in load(args.chart)}
    base = {ident(o): normalize(o) for o in load(args.kustomize) if o["kind"] != "Namespace"}
    problems = []
    for key in sorted(set(chart) | set(base)):
        if key not in base:
            problems.append(f"{key} is in the chart but not in the kustomize base")
        elif key not in chart:
            problems.append(f"{key} is in the kustomize base but not in the chart")
        elif chart[key] != base[key]:
            a = yaml.safe_dump(chart[key], sort_keys=True).splitlines()
            b = yaml.safe_dump(base[key], sort_keys=True).splitlines()
            diff = "\n".join(difflib.unified_diff(a, b, "chart", "kustomize", lineterm="", n=1))
            problems.append(f"{key} differs:\n{diff}")
    for p in problems:
        print(f"FAIL {p}")
    if not problems:
        print(f"ok   kustomize base == chart defaults ({len(chart)} objects)")
    return 1 if problems else 0


# --- argocd ---------------------------------------------------------------------------------

def cmd_argocd(args) -> int:
    problems = []
    apps = load(args.file)
    for app in apps:
        name = ident(app)
        if app.get("apiVersion") != "argoproj.io/v1alpha1" or app.get("kind") != "Application":
            problems.append(f"{name}: not an argoproj.io/v1alpha1 Application")
            continue
        spec = app.get("spec", {})
        for key in ("project", "source", "destination"):
            if key not in spec:
                problems.append(f"{name}: spec.{key} missing")
        path = spec.get("source", {}).get("path", "")
        if not path or not os.path.isdir(os.path.join(args.repo_root, path)):
            problems.append(f"{name}: source.path {path!r} is not a directory of this repository")
        if "helm" in spec.get("source", {}) and not os.path.isfile(os.path.join(args.repo_root, path, "Chart.yaml")):
            problems.append(f"{name}: source.helm set but {path} has no Chart.yaml")
    for p in problems:
        print(f"FAIL {args.file}: {p}")
    if not problems:
        print(f"ok   {args.file}: {len(apps)} Applications, paths exist")
    return 1 if problems or not apps else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("kube-validate")
    p.add_argument("-k", "--kubernetes-version", required=True)
    p.add_argument("--skip-group", action="append", default=[])
    p.add_argument("--expect-invalid", action="store_true")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_kube_validate)

    p = sub.add_parser("policy")
    p.add_argument("--watch-namespace", required=True)
    p.add_argument("--rbac", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--leader-election", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("file")
    p.set_defaults(func=cmd_policy)

    p = sub.add_parser("equivalent")
    p.add_argument("chart")
    p.add_argument("kustomize")
    p.set_defaults(func=cmd_equivalent)

    p = sub.add_parser("argocd")
    p.add_argument("repo_root")
    p.add_argument("file")
    p.set_defaults(func=cmd_argocd)

    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
