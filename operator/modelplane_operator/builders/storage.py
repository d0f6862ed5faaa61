"""How a replica reaches its model's storage: credentials, cloud identity and hot reload.

Pure pieces of the pod spec that ``deployment.py`` puts together, for one track's model.

Credentials (``model.credentialsSecret``). For ``s3://``, ``gs://`` and Azure Blob the
Secret is mounted as a volume and ``MODELPLANE_STORAGE_CREDENTIALS_DIR`` names the folder:
the storage code reads one file per variable (``uri.CREDENTIAL_VARIABLES``), the same keys
as a Secret made for ``envFrom``. Files rather than variables because

- ``GOOGLE_APPLICATION_CREDENTIALS`` is a key *file* to every Google SDK; a mounted key
  stays one (its variable then names the mounted file), where ``envFrom`` would put the
  JSON itself into a variable;
- the kubelet rewrites a mounted Secret in place when it changes (about a minute later)
  and the storage code reads the folder afresh after a failure, so rotated keys and
  renewed session tokens reach a runtime that polls for weeks (``pollSeconds``) without a
  restart; variables are fixed when the container starts;
- values never enter the process environment, which every child process inherits and
  ``/proc/<pid>/environ``, crash reports and debug shells show (checkov CKV_K8S_35, "prefer
  secrets as files").

Only the variable names the storage code knows are read from the folder; other keys are
ignored. For ``http(s)://`` archives the keys are the fetcher's own settings
(``MODELPLANE_STORAGE_BEARER_TOKEN``, ``..._USERNAME``, ``..._PASSWORD``), which it reads
from its environment: there the Secret stays ``envFrom``, and only the fetcher sees it.

Identity (``model.serviceAccountName``). The pods run as that ServiceAccount, which is how
the clouds hand a pod an identity without any Secret: EKS IRSA and EKS Pod Identity inject
a projected token and the SDK variables through their admission webhooks, GKE Workload
Identity answers the metadata server as the ServiceAccount's Google identity, and AKS
Workload Identity does the same as IRSA for pods labelled ``azure.workload.identity/use``
(added here for Azure models). Each webhook mounts its own audience-bound token, so the
pods still do not mount the Kubernetes API token (``automountServiceAccountToken: false``).

Hot reload (``model.pollSeconds``). The runtime gets ``MODELPLANE_POLL_SECONDS``. A
``pvc://`` repository is read in place. An object store repository is fetched once by the
init container, as always, and the runtime then follows it itself
(``MODELPLANE_MODEL_URI``, mirror.py): it copies new versions into the model volume and
removes deleted ones, so it needs that volume writable and the same credentials.
"""

from __future__ import annotations

from typing import Any

from modelplane_runtime import contract
from modelplane_runtime.storage.uri import ENV_CREDENTIALS_DIR, ObjectURI, parse_uri

from modelplane_operator.spec import ModelSource

CREDENTIALS_VOLUME = "storage-credentials"
CREDENTIALS_MOUNT_PATH = "/etc/modelplane/storage-credentials"
SECRET_FILE_MODE = 0o440
"""Owner and group read: the kubelet makes the files group-owned by the pod's fsGroup,
which the runtime's user belongs to; nobody else on the node's filesystem may read them."""
AZURE_WORKLOAD_IDENTITY_LABEL = "azure.workload.identity/use"
"""The pod label AKS's workload identity webhook requires before it injects a token."""


def mounts_credentials(model: ModelSource) -> bool:
    """Whether the credentials Secret is mounted as files (object stores) for this model."""
    return model.credentials_secret is not None and model.object_store


def mirrors(model: ModelSource) -> bool:
    """Whether the runtime itself reads the object store (polling a remote repository)."""
    return model.polls and model.object_store


def credentials_volume(model: ModelSource) -> dict[str, Any] | None:
    """The Secret volume of an object store's credentials, if the model has them."""
    if not mounts_credentials(model):
        return None
    return {"name": CREDENTIALS_VOLUME,
            "secret": {"secretName": model.credentials_secret,
                       "defaultMode": SECRET_FILE_MODE}}


def _credentials_mount() -> dict[str, Any]:
    return {"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_MOUNT_PATH, "readOnly": True}


def fetcher_access(model: ModelSource) -> dict[str, Any]:
    """The init container's fields for its credentials: ``envFrom``, or ``env`` plus a
    ``volumeMounts`` entry; empty without a credentials Secret."""
    if model.credentials_secret is None:
        return {}
    if mounts_credentials(model):
        return {"env": [{"name": ENV_CREDENTIALS_DIR, "value": CREDENTIALS_MOUNT_PATH}],
                "volumeMounts": [_credentials_mount()]}
    return {"envFrom": [{"secretRef": {"name": model.credentials_secret}}]}


def runtime_env(model: ModelSource) -> list[tuple[str, str]]:
    """The runtime's variables for hot reload and, when it reads the store, credentials."""
    if not model.polls:
        return []
    values = [(contract.ENV_POLL_SECONDS, str(model.poll_seconds))]
    if mirrors(model):
        values.append((contract.ENV_MODEL_URI, model.uri))
        if mounts_credentials(model):
            values.append((ENV_CREDENTIALS_DIR, CREDENTIALS_MOUNT_PATH))
    return values


def runtime_mounts(model: ModelSource) -> list[dict[str, Any]]:
    """Volume mounts the runtime needs to read the store itself (the credentials)."""
    return [_credentials_mount()] if mirrors(model) and mounts_credentials(model) else []


def model_volume_writable(model: ModelSource) -> bool:
    """Whether the runtime may write the model volume (it copies new versions into it)."""
    return mirrors(model)


def service_account(model: ModelSource) -> str | None:
    """The ServiceAccount the pods run as, if the model names one."""
    return model.service_account_name


def identity_labels(model: ModelSource) -> dict[str, str]:
    """Pod labels a cloud's workload identity needs (AKS: azure.workload.identity/use)."""
    if model.service_account_name is None or not model.object_store:
        return {}
    uri = parse_uri(model.uri)  # valid: the spec was checked with the same parser
    if isinstance(uri, ObjectURI) and uri.scheme == "az":
        return {AZURE_WORKLOAD_IDENTITY_LABEL: "true"}
    return {}
