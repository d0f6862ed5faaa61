"""Just enough of a Kubernetes client for discovery: credentials, JSON GETs, watches, and
the merge patch that renews the wake Lease.

Credentials: in a pod, the service account (its token file is read again every minute:
projected tokens rotate, and client-go re-reads them too); elsewhere the current context of
``$KUBECONFIG`` (or ``~/.kube/config``): server, CA, client certificates, bearer tokens,
token files, basic auth, and ``exec`` credential plugins (what EKS, GKE and AKS use).
Requests go through one aiohttp session; no Kubernetes SDK, so the image stays small.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp
import yaml

SERVICE_ACCOUNT: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REFRESH_S: Final = 60.0


class CredentialsError(RuntimeError):
    """Neither an in-cluster service account nor a usable kubeconfig."""


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass
class Credentials:
    """Where the API server is and how to authenticate to it."""

    server: str
    namespace: str = "default"
    ssl_context: ssl.SSLContext | None = None
    token: str | None = None
    token_file: Path | None = None
    basic: tuple[str, str] | None = None
    exec_spec: dict[str, Any] | None = None
    _token_read: float = 0.0
    _expires: float = 0.0
    _environment: dict[str, str] = field(default_factory=dict)

    def authorization(self) -> str | None:
        """The Authorization header value now (re-reading or re-running what expires)."""
        now = time.monotonic()
        if self.token_file is not None and now - self._token_read > TOKEN_REFRESH_S:
            self.token = self.token_file.read_text().strip()
            self._token_read = now
        if self.exec_spec is not None and (self.token is None or now >= self._expires):
            self._run_exec()
        if self.token:
            return f"Bearer {self.token}"
        if self.basic is not None:
            raw = f"{self.basic[0]}:{self.basic[1]}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return None

    def _run_exec(self) -> None:
        spec = self.exec_spec or {}
        env = dict(os.environ)
        for item in spec.get("env") or []:
            env[str(item["name"])] = str(item["value"])
        done = subprocess.run(
            [spec["command"], *(spec.get("args") or [])], capture_output=True, text=True,
            env=env, timeout=60, check=False,
        )
        if done.returncode != 0:
            raise CredentialsError(f"kubeconfig exec plugin {spec['command']} failed: "
                                   f"{done.stderr.strip()[:300]}")
        status = json.loads(done.stdout).get("status") or {}
        self.token = status.get("token")
        expiry = status.get("expirationTimestamp")
        lifetime = 300.0
        if expiry:
            stamp = datetime.fromisoformat(str(expiry).replace("Z", "+00:00")).timestamp()
            lifetime = max(0.0, stamp - time.time() - 30)
        self._expires = time.monotonic() + lifetime


def _data_or_file(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    data = entry.get(f"{key}-data")
    if data:
        return base64.b64decode(data)
    path = entry.get(key)
    if path:
        resolved = Path(path) if Path(path).is_absolute() else base / path
        return resolved.read_bytes()
    return None


def _context(ca: bytes | None, insecure: bool, cert: bytes | None,
             key: bytes | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca:
        context.load_verify_locations(cadata=ca.decode())
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert and key:
        # load_cert_chain reads files only; the files live just long enough to be read.
        with tempfile.TemporaryDirectory() as folder:
            cert_path, key_path = Path(folder, "cert.pem"), Path(folder, "key.pem")
            for path, data in ((cert_path, cert), (key_path, key)):
                path.touch(mode=0o600)
                path.write_bytes(data)
            context.load_cert_chain(str(cert_path), str(key_path))
    return context


def in_cluster() -> Credentials | None:
    """The pod's service account, or None outside a pod."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get(
        "KUBERNETES_SERVICE_PORT")
    token = SERVICE_ACCOUNT / "token"
    if not host or not port or not token.is_file():
        return None
    if ":" in host:
        host = f"[{host}]"
    namespace_file = SERVICE_ACCOUNT / "namespace"
    ca = SERVICE_ACCOUNT / "ca.crt"
    return Credentials(
        server=f"https://{host}:{port}",
        namespace=namespace_file.read_text().strip() if namespace_file.is_file() else "default",
        ssl_context=_context(ca.read_bytes() if ca.is_file() else None, False, None, None),
        token_file=token,
    )


def from_kubeconfig(paths: str | None = None) -> Credentials:
    """The current context of the kubeconfig files (``$KUBECONFIG``'s list, merged as
    kubectl does: the first file to define a name wins)."""
    listed = paths if paths is not None else os.environ.get("KUBECONFIG", "")
    files = [Path(p) for p in listed.split(os.pathsep) if p] or [Path.home() / ".kube" / "config"]
    merged: dict[str, dict[str, Any]] = {"clusters": {}, "users": {}, "contexts": {}}
    current = ""
    base = files[0].parent
    for path in files:
        if not path.is_file():
            continue
        config = yaml.safe_load(path.read_text()) or {}
        current = current or str(config.get("current-context") or "")
        for section, inner in (("clusters", "cluster"), ("users", "user"),
                               ("contexts", "context")):
            for item in config.get(section) or []:
                merged[section].setdefault(str(item.get("name")), {
                    **(item.get(inner) or {}), "_base": path.parent})
    context = merged["contexts"].get(current)
    if context is None:
        raise CredentialsError(f"no current context in kubeconfig {listed or files[0]}")
    cluster = merged["clusters"].get(str(context.get("cluster")))
    if cluster is None or not cluster.get("server"):
        raise CredentialsError(f"kubeconfig context {current!r} names no usable cluster")
    user = merged["users"].get(str(context.get("user")), {})
    base = cluster["_base"]
    server = str(cluster["server"]).rstrip("/")
    tls = None
    if server.startswith("https"):
        tls = _context(_data_or_file(cluster, "certificate-authority", base),
                       bool(cluster.get("insecure-skip-tls-verify")),
                       _data_or_file(user, "client-certificate", user.get("_base", base)),
                       _data_or_file(user, "client-key", user.get("_base", base)))
    token_file = user.get("tokenFile")
    return Credentials(
        server=server,
        namespace=str(context.get("namespace") or "default"),
        ssl_context=tls,
        token=user.get("token"),
        token_file=Path(token_file) if token_file else None,
        basic=(str(user["username"]), str(user.get("password", "")))
        if user.get("username") else None,
        exec_spec=user.get("exec"),
    )


def load_credentials() -> Credentials:
    """In-cluster service account if present, else the kubeconfig's current context."""
    try:
        found = in_cluster()
        return found if found is not None else from_kubeconfig()
    except (OSError, ValueError, KeyError, yaml.YAMLError, ssl.SSLError) as exc:
        raise CredentialsError(f"no usable Kubernetes credentials: {exc}") from None


class KubeClient:
    """JSON GETs and line-by-line watches against one API server."""

    def __init__(self, credentials: Credentials, session: aiohttp.ClientSession) -> None:
        self.credentials = credentials
        self._session = session

    async def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "modelplane-balancer"}
        credentials = self.credentials
        # An exec plugin runs a process: off the event loop, which is serving requests.
        authorization = (await asyncio.to_thread(credentials.authorization)
                         if credentials.exec_spec is not None else credentials.authorization())
        if authorization:
            headers["Authorization"] = authorization
        return headers

    async def get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """One GET; the decoded JSON body, or ApiError."""
        url = f"{self.credentials.server}{path}?{urlencode(params)}"
        async with self._session.get(url, headers=await self._headers(),
                                     ssl=self.credentials.ssl_context or True) as response:
            raw = await response.read()
            if response.status >= 400:
                raise ApiError(response.status, raw.decode(errors="replace")[:500])
            result: dict[str, Any] = json.loads(raw)
            return result

    async def patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """One JSON merge patch (RFC 7386); the decoded answer, or ApiError."""
        url = f"{self.credentials.server}{path}"
        headers = {**await self._headers(), "Content-Type": "application/merge-patch+json"}
        async with self._session.patch(url, data=json.dumps(body), headers=headers,
                                       ssl=self.credentials.ssl_context or True) as response:
            raw = await response.read()
            if response.status >= 400:
                raise ApiError(response.status, raw.decode(errors="replace")[:500])
            result: dict[str, Any] = json.loads(raw)
            return result

    @contextlib.asynccontextmanager
    async def watch(self, path: str, params: Mapping[str, str],
                    read_timeout_s: float) -> AsyncIterator[aiohttp.StreamReader]:
        """A watch stream: the caller reads one JSON event per line."""
        url = f"{self.credentials.server}{path}?{urlencode(params)}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout_s)
        async with self._session.get(url, headers=await self._headers(), timeout=timeout,
                                     ssl=self.credentials.ssl_context or True) as response:
            if response.status >= 400:
                raise ApiError(response.status, (await response.text())[:500])
            yield response.content
