"""deploy/kubernetes/ is valid for Kubernetes and agrees with the bot and its image.

Validated offline against the Kubernetes JSON schemas shipped by the kubernetes-validate
package (strict: an unknown or misspelt field fails).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bot.app import STOP_DEADLINE_SECONDS
from config.settings import Settings, setting_name

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"  # the oldest release still supported by the major platforms
MANIFESTS = sorted(path for path in DEPLOY.glob("*.yaml") if path.name != "kustomization.yaml")


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_is_valid_against_the_kubernetes_schemas(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_a_broken_manifest_is_refused() -> None:
    """The validation really checks: a misspelt field fails."""
    broken = load("statefulset.yaml")
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load("kustomization.yaml")
    assert sorted(kustomization["resources"]) == [path.name for path in MANIFESTS]


def test_one_replica_with_its_volume_probes_secret_and_metrics_port() -> None:
    statefulset = load("statefulset.yaml")
    config = load("configmap.yaml")["data"]
    secret = load("secret.yaml")
    service = load("service.yaml")
    spec = statefulset["spec"]
    assert spec["replicas"] == 1, "one bot account = one device = one process"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]

    # The data folder is the persistent volume.
    (claim,) = spec["volumeClaimTemplates"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == config["TCHAP_BOT_DATA_DIR"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]

    # Probes and metrics on the configured health port, reachable from the kubelet.
    (port,) = container["ports"]
    assert port["containerPort"] == int(config["TCHAP_BOT_HEALTH_PORT"])
    assert config["TCHAP_BOT_HEALTH_HOST"] == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    (service_port,) = service["spec"]["ports"]
    assert service_port["name"] == "metrics" and service_port["targetPort"] == port["name"]
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]

    # Credentials from the Secret, settings from the ConfigMap: all of them real settings.
    sources = {next(iter(ref)): ref[next(iter(ref))]["name"] for ref in container["envFrom"]}
    assert sources == {"configMapRef": "tchap-bot", "secretRef": "tchap-bot"}
    known = {setting_name(name) for name in Settings.model_fields}
    for name in [*config, *secret["stringData"]]:
        assert name in known, f"{name} is not a setting the bot reads"
    assert {"TCHAP_BOT_PASSWORD", "MISTRAL_API_KEY"} <= set(secret["stringData"])
    assert not set(secret["stringData"]) & set(config), "no secret in the ConfigMap"

    # Non-root, read-only root filesystem; SIGTERM has time to finish.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/tmp" in mounts.values()
    assert pod["terminationGracePeriodSeconds"] > STOP_DEADLINE_SECONDS


def test_pod_user_is_the_image_user() -> None:
    from tests.integration.test_install_steps import dockerfile_instructions

    user = dict(dockerfile_instructions())["USER"]
    pod = load("statefulset.yaml")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(user)
    assert pod["securityContext"]["fsGroup"] == int(user), "the volume is writable by the bot"
