"""The Kubernetes manifests (k8s/) and the Dockerfile, checked without a cluster.

The kustomize base and the scale-out overlay are rendered with a real kustomize: a
`kustomize` on PATH, else `kubectl kustomize` (`bash install.sh --test` installs Debian's
kubectl, package kubernetes-client, when neither is there; CALLSTREAM_TEST_KUSTOMIZE
names another command, e.g. "/usr/bin/kubectl kustomize"). Every rendered document is
validated in strict mode (no unknown fields) against the Kubernetes JSON schemas bundled
in the `kubernetes-validate` package, for the oldest and the newest Kubernetes version
named below. No network is used.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
TARGETS = {"base": K8S / "base", "scale-out": K8S / "overlays" / "scale-out"}
# Kubernetes versions validated against: a supported floor and the newest schemas bundled.
K8S_VERSIONS = ("1.29.0", kv.latest_version())

SECRET_NAME = "callstream-secrets"
SECRET_KEYS = {
    "CALLSTREAM_ACS_CONNECTION_STRING",
    "CALLSTREAM_API_TOKENS",
    "CALLSTREAM_CALLBACK_SECRET",
    "CALLSTREAM_PSEUDONYM_KEY",
    "CALLSTREAM_SPEECH_KEY",
    "OPENAI_API_KEY",
}
# Settings that must never be a plain value in a manifest (a ConfigMap or `value:`).
NEVER_PLAIN = SECRET_KEYS | {"CALLSTREAM_STORE", "CALLSTREAM_ACS_KEY", "AZURE_OPENAI_API_KEY"}
# Shapes of real secret values: an ACS connection string's key, an OpenAI key, a
# password inside a database or Redis URL (a $VARIABLE or <placeholder> is allowed), a
# PEM private key.
SECRET_VALUE = re.compile(
    r"accesskey=|AccountKey=|\bsk-[A-Za-z0-9_-]{16,}|"
    r"(?:postgres(?:ql)?|rediss?)://[^\s/@:]*:(?![$<])[^\s/@]+@|-----BEGIN [A-Z ]*PRIVATE KEY",
    re.IGNORECASE,
)


def _kustomize_command() -> list[str] | None:
    if os.environ.get("CALLSTREAM_TEST_KUSTOMIZE"):
        return shlex.split(os.environ["CALLSTREAM_TEST_KUSTOMIZE"])
    if shutil.which("kustomize"):
        return [shutil.which("kustomize"), "build"]
    if shutil.which("kubectl"):
        return [shutil.which("kubectl"), "kustomize"]
    return None


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    command = _kustomize_command()
    if command is None:
        pytest.skip(
            "no kustomize or kubectl on PATH (bash install.sh --test installs kubernetes-client)"
        )
    out = {}
    for name, path in TARGETS.items():
        proc = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{' '.join(command)} {path} failed:\n{proc.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    return out


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(docs: list[dict]) -> dict:
    (c,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def config(docs: list[dict]) -> dict[str, str]:
    return one(docs, "ConfigMap")["data"]


def env_of(docs: list[dict]) -> dict[str, dict]:
    entries = container(docs)["env"]
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), f"duplicate env entries: {names}"
    return {e["name"]: e for e in entries}


def secret_ref(entry: dict) -> dict:
    ref = entry.get("valueFrom", {}).get("secretKeyRef")
    assert ref is not None, f"{entry['name']} is not a secretKeyRef"
    return ref


@pytest.mark.parametrize("target", TARGETS)
def test_renders_the_expected_objects(rendered, target):
    kinds = sorted(d["kind"] for d in rendered[target])
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
        ]
    )


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_every_document_validates_strictly(rendered, target, version):
    errors = []
    for doc in rendered[target]:
        try:
            kv.validate(doc, version, strict=True)  # SchemaNotFoundError for an unknown kind
        except kv.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']} at {where}: {exc.message}")
    if errors:
        pytest.fail(f"{target}, Kubernetes {version}:\n" + "\n".join(errors), pytrace=False)


def test_strict_validation_catches_an_unknown_field(rendered):
    """The validator is strict deep inside a document, not only at the top."""
    deployment = copy.deepcopy(one(rendered["base"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kv.ValidationError, match="httpGett"):
        kv.validate(deployment, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_probes_ports_and_selectors_agree(rendered, target):
    docs = rendered[target]
    c = container(docs)
    (port,) = c["ports"]
    assert port["containerPort"] == int(config(docs)["CALLSTREAM_PORT"]) == 8080
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        http = c[probe]["httpGet"]
        assert http["path"] == path and http["port"] in (port["name"], port["containerPort"]), probe
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": one(docs, "Deployment")["spec"]["selector"]["matchLabels"],
        "Service": one(docs, "Service")["spec"]["selector"],
        "PodDisruptionBudget": one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        "NetworkPolicy": one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    }
    for kind, selector in selectors.items():
        assert selector.items() <= pod_labels.items(), f"{kind} selector does not match the pods"
    (svc_port,) = one(docs, "Service")["spec"]["ports"]
    assert svc_port["targetPort"] in (port["name"], port["containerPort"])
    target_ref = one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target_ref["kind"], target_ref["name"]) == (
        "Deployment",
        one(docs, "Deployment")["metadata"]["name"],
    )
    assert ":" in c["image"] and not c["image"].endswith(":latest")


@pytest.mark.parametrize("target", TARGETS)
def test_drain_fits_in_the_termination_grace_period(rendered, target):
    docs = rendered[target]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    drain_grace = float(config(docs)["CALLSTREAM_DRAIN_GRACE_S"])
    command = container(docs)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop_s = float(command[1])
    assert 1 <= pre_stop_s <= 15
    # SIGTERM comes after preStop, and the grace period counts from before preStop.
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + drain_grace


@pytest.mark.parametrize("target", TARGETS)
def test_runs_unprivileged_on_a_read_only_root(rendered, target):
    docs = rendered[target]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    assert sc.get("privileged", False) is False
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    # The data dir and /tmp are the only writable places, both emptyDirs.
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert set(mounts.values()) <= empty_dirs
    data_dir = env_of(docs)["CALLSTREAM_DATA_DIR"]["value"]
    assert data_dir in mounts and "/tmp" in mounts
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys()
    assert "memory" in c["resources"]["limits"]


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_are_references_only(rendered, target):
    docs = rendered[target]
    assert not [d for d in docs if d["kind"] == "Secret"]
    env = env_of(docs)
    assert SECRET_KEYS <= env.keys()
    for name, entry in env.items():
        if name in NEVER_PLAIN:
            ref = secret_ref(entry)
            assert (ref["name"], ref["key"]) == (SECRET_NAME, name)
            assert "value" not in entry
    assert not (NEVER_PLAIN & config(docs).keys())
    # Required: without API tokens `serve` refuses to listen on 0.0.0.0; without a fixed
    # callback secret Event Grid's deliveries (and, on many replicas, ACS's callbacks to
    # another replica) are refused; without a fixed pseudonym key a caller's pseudonym would
    # change with every pod (the data dir is an emptyDir) and differ between replicas.
    for name in ("CALLSTREAM_API_TOKENS", "CALLSTREAM_CALLBACK_SECRET", "CALLSTREAM_PSEUDONYM_KEY"):
        assert secret_ref(env[name]).get("optional", False) is False, name
    for value in config(docs).values():
        assert not SECRET_VALUE.search(value), value


def test_no_secret_values_in_the_repository_manifests():
    files = [p for p in K8S.rglob("*") if p.is_file()]
    assert len(files) >= 8
    files += [ROOT / "Dockerfile", ROOT / ".dockerignore"]
    for path in files:
        text = path.read_text()
        assert not SECRET_VALUE.search(text), f"{path}: looks like a secret value"
        for doc in yaml.safe_load_all(text) if path.suffix in (".yaml", ".yml") else ():
            assert not (doc or {}).get("kind") == "Secret", (
                f"{path}: a Secret belongs to the deployer"
            )


@pytest.mark.parametrize("target", TARGETS)
def test_more_than_one_replica_only_with_shared_bus_and_store(rendered, target):
    """Replicas share nothing but Redis and PostgreSQL: memory bus and SQLite mean one."""
    docs = rendered[target]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert "replicas" not in one(docs, "Deployment")["spec"], "the HPA owns the replica count"
    env = env_of(docs)
    bus = config(docs).get("CALLSTREAM_BUS", "memory")
    if hpa["spec"]["maxReplicas"] > 1:
        assert bus.startswith(("redis://", "rediss://"))
        assert secret_ref(env["CALLSTREAM_STORE"]).get("optional", False) is False
        assert secret_ref(env["CALLSTREAM_CALLBACK_SECRET"]).get("optional", False) is False
    else:
        assert hpa["spec"]["minReplicas"] == 1


def test_scale_out_overlay(rendered):
    docs = rendered["scale-out"]
    assert config(docs)["CALLSTREAM_BUS"].startswith("redis://")
    assert "CALLSTREAM_STORE" in env_of(docs)
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert {t["topologyKey"] for t in pod["topologySpreadConstraints"]} >= {
        "kubernetes.io/hostname"
    }
    # The base itself stays a single replica on the embedded defaults.
    assert config(rendered["base"])["CALLSTREAM_BUS"] == "memory"
    assert "CALLSTREAM_STORE" not in env_of(rendered["base"])


@pytest.mark.parametrize("target", TARGETS)
def test_network_policy_ports(rendered, target):
    np = one(rendered[target], "NetworkPolicy")["spec"]
    assert sorted(np["policyTypes"]) == ["Egress", "Ingress"]
    ingress = [
        (p.get("protocol", "TCP"), p["port"]) for rule in np["ingress"] for p in rule["ports"]
    ]
    assert ingress == [("TCP", 8080)]
    assert all("from" not in rule for rule in np["ingress"])
    egress = {(p.get("protocol", "TCP"), p["port"]) for rule in np["egress"] for p in rule["ports"]}
    assert egress == {("UDP", 53), ("TCP", 53), ("TCP", 6379), ("TCP", 5432), ("TCP", 443)}


# --- Dockerfile ---------------------------------------------------------------------


def dockerfile_stages() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """(ARG defaults before the first FROM, stages as [(INSTRUCTION, arguments)])."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            stages.append([])
        if not stages:
            if instruction == "ARG" and "=" in rest:
                key, _, value = rest.partition("=")
                args[key] = value
            continue
        stages[-1].append((instruction, rest))
    return args, stages


def test_dockerfile_runtime_stage():
    args, stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: a builder and a runtime"
    runtime = stages[-1]
    base = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], runtime[0][1].split()[0])
    assert re.fullmatch(r"python:3\.1[1-9]-slim-bookworm", base), base

    installs = " ".join(rest for ins, rest in runtime if ins == "RUN" and "apt-get install" in rest)
    assert {"libssl3", "libuuid1", "ca-certificates"} <= set(installs.split())

    copies = [rest for ins, rest in runtime if ins == "COPY"]
    assert any(c.startswith("--from=") for c in copies), "the runtime copies the builder's venv"
    assert not any(c.split()[0] in (".", "./") for c in copies), "no source tree in the runtime"

    users = [rest for ins, rest in runtime if ins == "USER"]
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # Numeric, so runAsNonRoot can check it, and the same user the pods run as.
    assert user.isdigit()
    assert [rest for ins, rest in runtime if ins == "EXPOSE"] == ["8080"]


def test_dockerfile_command_serves(rendered):
    _, stages = dockerfile_stages()
    runtime = stages[-1]
    cmd = [rest for ins, rest in runtime if ins == "CMD"][-1]
    assert re.fullmatch(r'\["callstream",\s*"serve"(,.*)?\]', cmd), cmd
    user = [rest for ins, rest in runtime if ins == "USER"][-1].split(":")[0]
    for docs in rendered.values():
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == int(user)
        # `command` would replace the image's ENTRYPOINT (tini, which forwards SIGTERM).
        c = container(docs)
        assert "command" not in c and c.get("args", ["callstream", "serve"])[:2] == [
            "callstream",
            "serve",
        ]


def test_dockerfile_builder_installs_the_package():
    """The builder copies what `pip install .` needs: metadata and every package."""
    _, stages = dockerfile_stages()
    builder = [step for stage in stages[:-1] for step in stage]
    assert any(
        ins == "RUN" and re.search(r"pip install (--[\w-]+ )*\.( |$)", rest)
        for ins, rest in builder
    )
    copied = {
        Path(src).parts[0]
        for ins, rest in builder
        if ins == "COPY" and not rest.startswith("--from=")
        for src in rest.split()[:-1]
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", project["project"]["readme"]} <= copied

    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv"} <= ignored
    assert not copied & ignored, "the build context must keep what the Dockerfile copies"


def test_dockerfile_installs_the_lock_in_a_layer_of_its_own():
    """The dependencies come from the hash-checked lock, in a layer before any code is
    copied, so a code change rebuilds only the last layer."""
    _, stages = dockerfile_stages()
    builder = [step for stage in stages[:-1] for step in stage]
    first_code_copy = next(
        i
        for i, (ins, rest) in enumerate(builder)
        if ins == "COPY" and rest.split()[0] in ("models", "pipeline", "workers")
    )
    lock_copy = next(
        i
        for i, (ins, rest) in enumerate(builder)
        if ins == "COPY" and rest.split()[0] == "requirements.lock"
    )
    lock_install = next(
        i
        for i, (ins, rest) in enumerate(builder)
        if ins == "RUN" and "--require-hashes" in rest and "requirements.lock" in rest
    )
    assert lock_copy < lock_install < first_code_copy
    package_install = next(
        i
        for i, (ins, rest) in enumerate(builder)
        if ins == "RUN" and re.search(r"pip install .*\.( |$)", rest)
    )
    assert "--no-deps" in builder[package_install][1], "the package adds no unlocked dependency"
