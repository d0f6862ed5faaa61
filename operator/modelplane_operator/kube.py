"""A small asyncio client for the Kubernetes API: the calls the operator makes besides kopf's.

Credentials are loaded once at start-up (in-cluster service account, else the current
kubeconfig context) through the ``kubernetes`` package, which knows every kubeconfig
form; the same credentials are handed to kopf so both talk to the same server as the
same user. Requests go through one aiohttp session.

Every call is retried where repeating it is safe and the failure is the server's or the
network's (connection refused or reset, timeouts, 429, 5xx), a few times with backoff that
honours ``Retry-After`` (retry.py); what still fails after that reaches the caller as an
``ApiError``, so callers handle one exception type. A create whose answer was lost and that
is sent again meets 409 AlreadyExists, a delete meets 404: callers treat both as done. A
409 Conflict on a write is never retried here: the caller must read again first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from prometheus_client import Counter

from modelplane_operator.retry import Backoff, parse_retry_after

log = logging.getLogger(__name__)

FIELD_MANAGER = "modelplane-operator"
RETRIES = 4
"""Extra attempts of one call after a transient failure (five in all, about 3 s of backoff
unless the server asks for longer); callers retry further in their own loops."""
BACKOFF = Backoff(first_s=0.2, max_s=5.0)
UNREACHABLE = 0
"""``ApiError.status`` when no HTTP answer came back (refused, reset, timed out)."""

# Kinds the operator writes or reads, and where they live (plural, API group path).
_RESOURCES: dict[tuple[str, str], str] = {
    ("v1", "Service"): "services",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("apps/v1", "Deployment"): "deployments",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("modelplane.io/v1alpha1", "ModelDeployment"): "modeldeployments",
    ("metrics.k8s.io/v1beta1", "PodMetrics"): "pods",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
    ("discovery.k8s.io/v1", "EndpointSlice"): "endpointslices",
    ("coordination.k8s.io/v1", "Lease"): "leases",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobjects",
}


class CredentialsError(RuntimeError):
    """Neither an in-cluster service account nor a usable kubeconfig."""


class ApiError(Exception):
    """The API server answered with an error status, or could not be reached (status 0)."""

    def __init__(self, status: int, reason: str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else f"{reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        """Seconds the server asked us to wait (``Retry-After``), if it did."""

    @property
    def transient(self) -> bool:
        """Worth retrying soon: unreachable, conflicts, throttling, server trouble."""
        return self.status in (UNREACHABLE, 409, 429) or self.status >= 500

    @property
    def repeatable(self) -> bool:
        """The same request may simply be sent again (a 409 needs a fresh read first)."""
        return self.status in (UNREACHABLE, 429) or self.status >= 500

    @property
    def refused(self) -> bool:
        """The server refused the content (invalid, forbidden, too large): sending the same
        request again cannot help until the spec, or a cluster policy, changes."""
        return 400 <= self.status < 500 and self.status not in (404, 409, 410, 429)


def unreachable(exc: BaseException) -> ApiError:
    """An ``ApiError`` for a call that got no HTTP answer."""
    return ApiError(UNREACHABLE, "Unreachable", f"{type(exc).__name__}: {exc}".rstrip(": "))


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to authenticate to it."""

    server: str
    token: str | None = None
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    insecure: bool = False
    username: str | None = None
    password: str | None = None


def load_credentials() -> Credentials:
    """In-cluster service account if present, else the current kubeconfig context."""
    import kubernetes.client
    import kubernetes.config

    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        log.debug("using the in-cluster service account")
    except kubernetes.config.ConfigException as in_cluster:
        try:
            kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
        except (kubernetes.config.ConfigException, OSError) as kubeconfig:
            raise CredentialsError(
                f"no Kubernetes credentials: not in a cluster ({in_cluster}) and no usable "
                f"kubeconfig ({kubeconfig}); set KUBECONFIG or run in a Pod"
            ) from None
        log.debug("using the current kubeconfig context")
    config = kubernetes.client.Configuration.get_default_copy()
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
        "authorization"
    )
    token = header.split(" ", 1)[-1] if header else None
    return Credentials(
        server=str(config.host).rstrip("/"),
        token=token,
        ca_path=config.ssl_ca_cert or None,
        cert_path=config.cert_file or None,
        key_path=config.key_file or None,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
    )


def resource_tuple(api_version: str, kind: str) -> tuple[str, ...]:
    """kopf's spelling of a resource: (group, version, plural), or (version, plural) for core."""
    plural = _RESOURCES[(api_version, kind)]
    return (*api_version.split("/"), plural)


def resource_path(api_version: str, kind: str, namespace: str | None, name: str | None = None,
                  subresource: str | None = None) -> str:
    """The REST path of a kind (collection when ``name`` is None)."""
    try:
        plural = _RESOURCES[(api_version, kind)]
    except KeyError:
        raise ValueError(f"the operator does not manage {kind} ({api_version})") from None
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = base + (f"/namespaces/{quote(namespace)}" if namespace else "") + f"/{plural}"
    if name is not None:
        path += f"/{quote(name)}"
    if subresource:
        path += f"/{subresource}"
    return path


class KubeClient:
    """JSON in, JSON out; errors as ApiError. Counts its requests by verb."""

    def __init__(self, credentials: Credentials, session: aiohttp.ClientSession,
                 requests: Counter | None = None, retried: Counter | None = None) -> None:
        self._server = credentials.server
        self._session = session
        self._headers = {"Accept": "application/json", "User-Agent": FIELD_MANAGER}
        if credentials.token:
            self._headers["Authorization"] = f"Bearer {credentials.token}"
        self._auth = (
            aiohttp.BasicAuth(credentials.username, credentials.password or "")
            if credentials.username and not credentials.token else None
        )
        self._ssl: ssl.SSLContext | bool = True
        if self._server.startswith("https"):
            if credentials.insecure:
                self._ssl = False
            else:
                context = ssl.create_default_context(cafile=credentials.ca_path)
                if credentials.cert_path and credentials.key_path:
                    context.load_cert_chain(credentials.cert_path, credentials.key_path)
                self._ssl = context
        self._requests = requests
        self._retried = retried

    async def request(self, method: str, path: str, *, body: Any = None,
                      content_type: str = "application/json",
                      params: Mapping[str, str] | None = None,
                      retries: int = RETRIES) -> dict[str, Any]:
        """One API call, retried ``retries`` times on transient failures; the JSON answer."""
        url = self._server + path + (f"?{urlencode(params)}" if params else "")
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = orjson.dumps(body)
        attempt = 0
        while True:
            try:
                return await self._once(method, url, data, headers)
            except ApiError as exc:
                if not exc.repeatable or attempt >= retries:
                    raise
                delay = BACKOFF.delay(attempt, exc.retry_after)
                log.debug("%s %s failed (%s); again in %.2fs", method, path, exc, delay)
                if self._retried is not None:
                    self._retried.labels(str(exc.status)).inc()
                attempt += 1
                await asyncio.sleep(delay)

    async def _once(self, method: str, url: str, data: bytes | None,
                    headers: dict[str, str]) -> dict[str, Any]:
        if self._requests is not None:
            self._requests.labels(method.lower()).inc()
        try:
            async with self._session.request(method, url, data=data, headers=headers,
                                             ssl=self._ssl, auth=self._auth) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _error(resp, raw)
                result: dict[str, Any] = orjson.loads(raw) if raw else {}
                return result
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable(exc) from exc
        except ValueError as exc:  # a body that is not JSON: a proxy's page, a cut answer
            raise ApiError(UNREACHABLE, "BadResponse", str(exc)[:200]) from exc

    @contextlib.asynccontextmanager
    async def stream(self, path: str, params: Mapping[str, str],
                     read_timeout_s: float) -> AsyncIterator[aiohttp.ClientResponse]:
        """A streaming GET (watch); the body is read by the caller line by line."""
        url = self._server + path + f"?{urlencode(params)}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout_s)
        if self._requests is not None:
            self._requests.labels("watch").inc()
        try:
            async with self._session.get(url, headers=self._headers, ssl=self._ssl,
                                         auth=self._auth, timeout=timeout) as resp:
                if resp.status >= 400:
                    raise _error(resp, await resp.read())
                yield resp
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable(exc) from exc

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """Read one object."""
        return await self.request("GET", resource_path(api_version, kind, namespace, name))

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object in its namespace."""
        meta = body["metadata"]
        path = resource_path(body["apiVersion"], body["kind"], meta.get("namespace"))
        return await self.request("POST", path, body=body,
                                  params={"fieldManager": FIELD_MANAGER})

    async def merge_patch(self, api_version: str, kind: str, namespace: str, name: str,
                          patch: Mapping[str, Any], subresource: str | None = None,
                          ) -> dict[str, Any]:
        """JSON merge patch (RFC 7386): works on custom resources too, unlike strategic."""
        path = resource_path(api_version, kind, namespace, name, subresource)
        return await self.request("PATCH", path, body=patch,
                                  content_type="application/merge-patch+json",
                                  params={"fieldManager": FIELD_MANAGER})

    async def delete(self, api_version: str, kind: str, namespace: str, name: str,
                     preconditions: Mapping[str, str] | None = None) -> None:
        """Delete an object (background propagation: its own dependents go to the GC).

        ``preconditions`` (uid, resourceVersion) make the server answer 409 instead of
        deleting an object that changed since it was read.
        """
        path = resource_path(api_version, kind, namespace, name)
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if preconditions:
            body["preconditions"] = dict(preconditions)
        await self.request("DELETE", path, body=body)


def _error(resp: aiohttp.ClientResponse, raw: bytes) -> ApiError:
    """The ApiError for an error answer (a metav1.Status body when the API server wrote it)."""
    text = raw.decode(errors="replace")
    try:
        detail = orjson.loads(raw)
        reason = str(detail.get("reason", ""))
        message = str(detail.get("message", text))
    except (ValueError, AttributeError):
        reason, message = resp.reason or "", text
    return ApiError(resp.status, reason, message[:2000],
                    parse_retry_after(resp.headers.get("Retry-After")))
