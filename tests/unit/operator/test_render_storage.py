"""Rendering a model's storage access: credentials, cloud identity and hot reload (issue 12).

The variables rendered here are read by the runtime's own settings classes in the last
tests, so a renamed variable fails here rather than silently in a pod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from modelplane_operator.builders.render import render
from modelplane_operator.builders.storage import (
    CREDENTIALS_MOUNT_PATH,
    SECRET_FILE_MODE,
    runtime_env,
)
from modelplane_operator.crd import crd, to_jsonschema
from modelplane_operator.spec import InvalidSpec, ModelSource, validate_spec
from modelplane_runtime import contract
from modelplane_runtime.settings import load_settings
from modelplane_runtime.storage.settings import load_storage_settings
from modelplane_runtime.storage.uri import ENV_CREDENTIALS_DIR

from .cases import DEFAULTS, by_kind, md

AZURE_HTTPS = "https://acct01.blob.core.windows.net/models/fraud"
OBJECT_STORES = ("s3://models/fraud", "gs://models/fraud", "az://models/fraud", AZURE_HTTPS)


def _pods(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [d["spec"]["template"] for d in by_kind(render(md(spec), DEFAULTS), "Deployment")]


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = _pods(spec)[0]["spec"]
    return pod


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in container["volumeMounts"]}


@pytest.mark.parametrize("uri", OBJECT_STORES)
def test_object_store_credentials_are_a_mounted_secret_for_the_fetcher_only(uri: str) -> None:
    pod = _pod({"model": {"uri": uri, "credentialsSecret": "store-keys"}})
    (init,) = pod["initContainers"]
    (runtime,) = pod["containers"]
    assert init["command"] == ["modelplane", "fetch", uri, contract.MODEL_MOUNT_PATH]
    assert "envFrom" not in init  # no secret value in any process environment
    assert _env(init) == {ENV_CREDENTIALS_DIR: CREDENTIALS_MOUNT_PATH}
    assert _mounts(init)["storage-credentials"] == {
        "name": "storage-credentials", "mountPath": CREDENTIALS_MOUNT_PATH, "readOnly": True}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["storage-credentials"] == {"name": "storage-credentials", "secret": {
        "secretName": "store-keys", "defaultMode": SECRET_FILE_MODE}}
    assert SECRET_FILE_MODE == 0o440
    # Without polling, the serving container never sees the credentials, and only reads.
    assert "storage-credentials" not in _mounts(runtime)
    assert ENV_CREDENTIALS_DIR not in _env(runtime)
    assert _mounts(runtime)["model"]["readOnly"] is True


def test_http_credentials_stay_variables_of_the_fetcher() -> None:
    pod = _pod({"model": {"uri": "https://models.example.com/m.tar.gz",
                          "credentialsSecret": "token"}})
    (init,) = pod["initContainers"]
    # MODELPLANE_STORAGE_BEARER_TOKEN and friends are read from the environment only.
    assert init["envFrom"] == [{"secretRef": {"name": "token"}}]
    assert "storage-credentials" not in _mounts(init)
    assert "storage-credentials" not in {v["name"] for v in pod["volumes"]}
    assert "envFrom" not in pod["containers"][0]


def test_no_secret_renders_no_credentials() -> None:
    pod = _pod({"model": {"uri": "s3://models/fraud"}})
    (init,) = pod["initContainers"]
    assert "env" not in init and "envFrom" not in init
    assert "storage-credentials" not in {v["name"] for v in pod["volumes"]}
    assert "serviceAccountName" not in pod


@pytest.mark.parametrize(("uri", "labels"), [
    ("s3://models/fraud", {}),
    ("gs://models/fraud", {}),
    ("az://models/fraud", {"azure.workload.identity/use": "true"}),
    (AZURE_HTTPS, {"azure.workload.identity/use": "true"}),
    ("https://models.example.com/m.tar.gz", {}),
])
def test_service_account_gives_the_pods_a_cloud_identity(
    uri: str, labels: dict[str, str]
) -> None:
    (deployment,) = by_kind(render(md({"model": {
        "uri": uri, "serviceAccountName": "model-reader"}}), DEFAULTS), "Deployment")
    template = deployment["spec"]["template"]
    assert template["spec"]["serviceAccountName"] == "model-reader"
    # Workload identity webhooks mount their own tokens; the API token stays out.
    assert template["spec"]["automountServiceAccountToken"] is False
    extra = {k: v for k, v in template["metadata"]["labels"].items()
             if k not in deployment["metadata"]["labels"]}
    assert extra == labels
    # The Deployment's selector is immutable: identity labels never go into it.
    assert "azure.workload.identity/use" not in deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("uri", OBJECT_STORES)
def test_polling_an_object_store_lets_the_runtime_follow_it(uri: str) -> None:
    pod = _pod({"model": {"uri": uri, "credentialsSecret": "store-keys", "pollSeconds": 30}})
    (init,) = pod["initContainers"]  # the first copy is still made before serving
    (runtime,) = pod["containers"]
    assert init["command"][:3] == ["modelplane", "fetch", uri]
    env = _env(runtime)
    assert env[contract.ENV_POLL_SECONDS] == "30"
    assert env[contract.ENV_MODEL_URI] == uri
    assert env[contract.ENV_MODEL_PATH] == contract.MODEL_MOUNT_PATH
    assert env[ENV_CREDENTIALS_DIR] == CREDENTIALS_MOUNT_PATH
    mounts = _mounts(runtime)
    assert mounts["storage-credentials"]["readOnly"] is True
    # New versions are copied into the model volume, an emptyDir: writable for the runtime.
    assert "readOnly" not in mounts["model"]
    assert {"name": "model", "emptyDir": {}} in pod["volumes"]


def test_polling_without_credentials_uses_the_default_chain() -> None:
    pod = _pod({"model": {"uri": "s3://models/fraud", "pollSeconds": 5,
                          "serviceAccountName": "irsa-reader"}})
    env = _env(pod["containers"][0])
    assert env[contract.ENV_MODEL_URI] == "s3://models/fraud"
    assert ENV_CREDENTIALS_DIR not in env
    assert "storage-credentials" not in _mounts(pod["containers"][0])
    assert pod["serviceAccountName"] == "irsa-reader"


def test_polling_a_claim_reads_it_in_place() -> None:
    pod = _pod({"model": {"uri": "pvc://store/fraud", "pollSeconds": 10}})
    (runtime,) = pod["containers"]
    env = _env(runtime)
    assert env[contract.ENV_POLL_SECONDS] == "10"
    assert contract.ENV_MODEL_URI not in env
    assert _mounts(runtime)["model"]["readOnly"] is True


@pytest.mark.parametrize("poll", [None, 0])
def test_no_polling_renders_no_poll_variables(poll: int | None) -> None:
    env = _env(_pod({"model": {"uri": "s3://models/fraud", "pollSeconds": poll}})
               ["containers"][0])
    assert contract.ENV_POLL_SECONDS not in env
    assert contract.ENV_MODEL_URI not in env


def test_each_track_reads_its_own_model_with_its_own_identity() -> None:
    stable, canary = _pods({
        "model": {"uri": "s3://models/fraud", "credentialsSecret": "aws-keys",
                  "pollSeconds": 60},
        "replicas": 4,
        "canary": {"trafficPercent": 50, "model": {
            "uri": "az://models/fraud-v2", "serviceAccountName": "aks-reader"}},
    })
    assert "serviceAccountName" not in stable["spec"]
    assert canary["spec"]["serviceAccountName"] == "aks-reader"
    assert canary["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert "azure.workload.identity/use" not in stable["metadata"]["labels"]
    assert _env(stable["spec"]["containers"][0])[contract.ENV_MODEL_URI] == "s3://models/fraud"
    assert contract.ENV_POLL_SECONDS not in _env(canary["spec"]["containers"][0])
    assert "storage-credentials" not in {v["name"] for v in canary["spec"]["volumes"]}


def test_user_env_wins_over_poll_variables() -> None:
    env = _pod({"model": {"uri": "pvc://store/m", "pollSeconds": 10},
                "runtime": {"env": [{"name": "MODELPLANE_POLL_SECONDS", "value": "2"}]}},
               )["containers"][0]["env"]
    assert [e for e in env if e["name"] == "MODELPLANE_POLL_SECONDS"] == [
        {"name": "MODELPLANE_POLL_SECONDS", "value": "2"}]


def test_containers_report_the_end_of_their_log_when_they_fail() -> None:
    pod = _pod({"model": {"uri": "s3://models/fraud"}})
    for container in pod["initContainers"] + pod["containers"]:
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


# ---- the spec's storage fields: what is refused, and how it is said ------------------------


@pytest.mark.parametrize(("model", "field", "words"), [
    ({"uri": "https://models.example.com/m.tar.gz", "pollSeconds": 30},
     "spec.model.pollSeconds", "copied once at start"),
    ({"uri": "demo://seed-mlp", "pollSeconds": 30}, "spec.model.pollSeconds", "pvc://"),
    ({"uri": "file:///models/m", "pollSeconds": 30}, "spec.model.pollSeconds", "object store"),
    ({"uri": "s3://models/m.tar.gz", "pollSeconds": 30}, "spec.model.pollSeconds", "one file"),
    ({"uri": "gs://models/m.keras", "pollSeconds": 30}, "spec.model.pollSeconds", "one file"),
    ({"uri": "s3://models/m", "pollSeconds": -1}, "spec.model.pollSeconds", "greater than"),
    ({"uri": "s3://models/m", "pollSeconds": 86_401}, "spec.model.pollSeconds", "less than"),
    ({"uri": "s3://models/m", "pollSeconds": "30"}, "spec.model.pollSeconds", "integer"),
    ({"uri": "s3://models/m", "pollSeconds": 1.5}, "spec.model.pollSeconds", "integer"),
    ({"uri": "s3://models/m", "serviceAccountName": "Model_Reader"},
     "spec.model.serviceAccountName", "ServiceAccount name"),
    ({"uri": "s3://models/m", "serviceAccountName": "a" * 254},
     "spec.model.serviceAccountName", "253"),
    ({"uri": "az://x/m"}, "spec.model.uri", "container name"),
    ({"uri": "s3://Models/m"}, "spec.model.uri", "bucket name"),
    ({"uri": "az://"}, "spec.model.uri", "needs a container"),
    ({"uri": "https://Bad_Account.blob.core.windows.net/models/m"}, "spec.model.uri",
     "storage account"),
    ({"uri": "AZ://models/m"}, "spec.model.uri", "unsupported scheme"),
])
def test_bad_storage_fields_name_the_field(model: dict[str, Any], field: str,
                                           words: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        validate_spec({"model": model})
    assert caught.value.field == field, caught.value
    assert words in str(caught.value)


def test_a_sas_token_never_reaches_a_message() -> None:
    uri = "https://Bad_Account.blob.core.windows.net/models/m?sv=2024&sig=S3CR3TSIGNATURE"
    with pytest.raises(InvalidSpec) as caught:
        validate_spec({"model": {"uri": uri}})
    assert "S3CR3T" not in str(caught.value)


def test_storage_fields_accepted() -> None:
    spec = validate_spec({"model": {"uri": AZURE_HTTPS + "?sv=1&sig=abc", "pollSeconds": 0,
                                    "serviceAccountName": "reader.v1"}})
    assert spec.model.object_store
    assert not spec.model.polls
    assert spec.model.service_account_name == "reader.v1"


# ---- what the runtime makes of the rendered variables ---------------------------------------


def test_the_runtime_reads_the_rendered_poll_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    model = ModelSource(uri="gs://models/fraud", poll_seconds=45, credentials_secret="keys")
    for name, value in runtime_env(model):
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.poll_seconds == 45
    assert settings.model_uri == "gs://models/fraud"
    storage = load_storage_settings()
    assert storage.credentials_dir == Path(CREDENTIALS_MOUNT_PATH)


# ---- the CRD schema says the same as the spec (what the API server refuses first) --------


@pytest.fixture(scope="module")
def schema() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        to_jsonschema(crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]))


@pytest.mark.parametrize("model", [
    {"uri": "az://models/fraud", "pollSeconds": 30, "serviceAccountName": "reader"},
    {"uri": AZURE_HTTPS + "?sv=1&sig=abc", "credentialsSecret": "keys"},
    {"uri": "gs://models/fraud", "pollSeconds": 0},
])
def test_the_crd_accepts_object_store_models(
    schema: jsonschema.Draft202012Validator, model: dict[str, Any]
) -> None:
    schema.validate(md({"model": model}))


@pytest.mark.parametrize("model", [
    {"uri": "ftp://models/fraud"},
    {"uri": "AZ://models/fraud"},
    {"uri": "models/fraud"},
    {"uri": "s3://models/fraud", "pollSeconds": -1},
    {"uri": "s3://models/fraud", "pollSeconds": 86_401},
    {"uri": "s3://models/fraud", "pollSeconds": "30"},
    {"uri": "s3://models/fraud", "serviceAccountName": "a" * 254},
])
def test_the_crd_refuses_what_the_spec_refuses(
    schema: jsonschema.Draft202012Validator, model: dict[str, Any]
) -> None:
    assert list(schema.iter_errors(md({"model": model}))), model
    with pytest.raises(InvalidSpec):
        validate_spec({"model": model})


def test_status_with_resource_use_validates(schema: jsonschema.Draft202012Validator) -> None:
    obj = md({"model": {"uri": "demo://"}})
    obj["status"] = {
        "modelVersion": "2",
        "resources": {"cpu": "1500m", "memory": "2048Mi", "gpus": 2, "gpuUtilization": 60,
                      "gpuMemoryUsed": "40960Mi", "gpuMemoryTotal": "163840Mi"},
        "pods": [{"name": "p", "cpu": "250m", "memory": "512Mi", "gpuUtilization": 30,
                  "gpuMemoryUsed": "10240Mi", "gpuMemoryTotal": "81920Mi",
                  "modelVersion": "2"}],
    }
    schema.validate(obj)
    obj["status"]["resources"]["gpuUtilization"] = "60%"
    assert list(schema.iter_errors(obj))
