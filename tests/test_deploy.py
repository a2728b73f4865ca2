"""What deploy/ and docker-compose.yml promise an operator, read from the files themselves: every
variable they set is one syncer reads, secrets only in the Secret, the probes on endpoints the web
app serves, a worker's shutdown long enough for its longest delivery attempt, one beat, and services
that scale. Their schema is checked by deploy/check (kubectl kustomize + kubernetes-validate, and
docker-compose config), which .ci/run runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from syncer.fakes.base import FakeServer
from syncer.locks import LINK_LOCK_WAIT_SECONDS
from syncer.policy import parse_policy
from syncer.settings import Settings
from tests.harness import REPO

KUBERNETES = REPO / "deploy" / "kubernetes"
COMPOSE = REPO / "docker-compose.yml"

# The calls one delivery attempt can make when it files a ticket (syncer/sync/tickets.py): the
# issue, its tags, the label search, the assignee's account, the create, the create again without
# a refused assignee, the remote link, Sentry's external-issue link, the note.
CALLS_PER_ATTEMPT = 9


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc]


def kustomization() -> dict[str, Any]:
    (doc,) = documents("kustomization.yaml")
    return doc


def resources() -> list[dict[str, Any]]:
    return [doc for name in kustomization()["resources"] for doc in documents(name)]


def the(kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def pod_specs() -> dict[str, dict[str, Any]]:
    """Every pod template of the kustomization, by its workload's name."""
    return {
        r["metadata"]["name"]: r["spec"]["template"]["spec"]
        for r in resources()
        if r["kind"] in ("Deployment", "StatefulSet", "Job")
    }


def setting_names() -> set[str]:
    """The environment variables syncer reads (syncer.settings), `PORT` included."""
    return {f"SYNCER_{name.upper()}" for name in Settings.model_fields} | {"PORT"}


def secret_names() -> set[str]:
    """Settings that are credentials, and the URLs that may carry a password."""
    typed = {
        f"SYNCER_{name.upper()}"
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation)
    }
    return typed | {"SYNCER_DATABASE_URL", "SYNCER_BROKER_URL", "SYNCER_REDIS_URL"}


def settings_map() -> dict[str, str]:
    return dict(the("ConfigMap", "syncer-settings")["data"])


def example_secret() -> dict[str, Any]:
    (doc,) = documents("secret.example.yaml")
    return doc


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


# ------------------------------------------------------------------ Kubernetes


def test_every_variable_the_manifests_set_is_one_syncer_reads() -> None:
    named = set(settings_map()) | set(example_secret()["stringData"])
    for spec in pod_specs().values():
        for container in spec["containers"]:
            named |= {env["name"] for env in container.get("env", [])}
    assert named - setting_names() == set()


def test_credentials_come_from_the_secret_and_only_placeholders_are_committed() -> None:
    secret = example_secret()
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "syncer-secrets"
    assert set(secret["stringData"]) <= secret_names()
    assert all("CHANGE-ME" in value for value in secret["stringData"].values())
    assert set(settings_map()) & secret_names() == set()  # a ConfigMap is no place for them
    assert "secret.example.yaml" not in kustomization()["resources"]  # never applied as it is
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            refs = {next(iter(ref)): ref[next(iter(ref))]["name"] for ref in container["envFrom"]}
            assert refs == {"configMapRef": "syncer-settings", "secretRef": "syncer-secrets"}, name
            assert not {env["name"] for env in container.get("env", [])} & secret_names(), name


def test_the_settings_and_the_example_secret_are_enough_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in {**settings_map(), **example_secret()["stringData"]}.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    settings.require_services()  # raises, naming what is missing
    assert settings.database_url.startswith("postgresql://")


def test_the_policy_comes_from_a_config_map_mounted_where_syncer_config_points() -> None:
    (generator,) = kustomization()["configMapGenerator"]
    assert generator["name"] == "syncer-policy" and generator["files"] == ["syncer.toml"]
    parse_policy((KUBERNETES / "syncer.toml").read_text(), "deploy/kubernetes/syncer.toml")
    config = Path(settings_map()["SYNCER_CONFIG"])
    assert config.name == "syncer.toml"
    for name in ("syncer-web", "syncer-worker", "syncer-beat"):
        spec = pod_specs()[name]
        volumes = {v["name"]: v for v in spec["volumes"]}
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == str(config.parent)]
        assert volumes[mount["name"]]["configMap"]["name"] == "syncer-policy", name


def test_web_probes_name_the_endpoints_the_web_app_serves(web: FakeServer) -> None:
    deployment = the("Deployment", "syncer-web")
    assert deployment["spec"]["replicas"] >= 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Intake needs the database only: a broker outage must not empty the Service.
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz?exclude=broker"
    (port,) = container["ports"]
    assert container["command"][-2:] == ["--port", str(port["containerPort"])]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]
        answer = httpx.get(f"{web.url}{container[probe]['httpGet']['path']}", timeout=10)
        assert answer.status_code == 200, (probe, answer.text)
    service = the("Service", "syncer-web")
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = the("PodDisruptionBudget", "syncer-web")
    assert budget["spec"]["selector"]["matchLabels"] == labels == service["spec"]["selector"]
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]  # drains can proceed


def longest_delivery_attempt(settings: Settings) -> float:
    s = settings
    per_call = s.http_connect_timeout + s.http_read_timeout + s.rate_limit_max_wait_seconds
    return CALLS_PER_ATTEMPT * per_call + LINK_LOCK_WAIT_SECONDS


def test_a_worker_is_given_time_to_finish_its_longest_delivery_attempt() -> None:
    deployment = the("Deployment", "syncer-worker")
    spec = deployment["spec"]["template"]["spec"]
    grace = spec["terminationGracePeriodSeconds"]
    assert grace >= longest_delivery_attempt(Settings()) == 325
    (container,) = spec["containers"]
    assert container["command"] == ["syncer", "worker"]
    assert "ports" not in container
    # One process per pod: a CPU quota is invisible to "auto", which would count the node's CPUs.
    assert {"name": "SYNCER_WORKER_PROCESSES", "value": "1"} in container["env"]
    assert compose()["services"]["worker"]["stop_grace_period"] == f"{grace}s"


def test_exactly_one_beat_and_a_rollout_never_runs_two() -> None:
    beats = [r for r in resources() if r["kind"] in ("Deployment", "StatefulSet")
             and "beat" in r["spec"]["template"]["spec"]["containers"][0]["command"]]
    (beat,) = beats
    assert beat["spec"]["replicas"] == 1
    assert beat["kind"] == "StatefulSet" or beat["spec"]["strategy"] == {"type": "Recreate"}


def test_the_release_job_upgrades_the_schema_once() -> None:
    job = the("Job", "syncer-db-upgrade")
    spec = job["spec"]["template"]["spec"]
    assert spec["containers"][0]["command"] == ["syncer", "db", "upgrade"]
    assert spec["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 1


# ------------------------------------------------------------------ docker compose


def test_compose_services_scale_and_beat_stays_single() -> None:
    services = compose()["services"]
    for name in ("web", "worker", "beat"):
        assert "container_name" not in services[name], name  # a fixed name cannot be scaled
        assert "hostname" not in services[name], name  # nor can one Celery node name
    assert "ports" not in services["worker"] and "ports" not in services["beat"]
    # One host port would refuse a second web replica: the published side is a variable, a range
    # when scaled.
    assert services["web"]["ports"] == ["${WEB_PORTS:-8000}:8000"]
    assert "scale" not in services["beat"] and "deploy" not in services["beat"]
    assert services["beat"]["command"][:2] == ["syncer", "beat"]


def test_compose_sets_only_variables_syncer_reads() -> None:
    services = compose()["services"]
    for name in ("web", "worker", "beat", "migrate"):
        assert set(services[name]["environment"]) - setting_names() == set(), name
