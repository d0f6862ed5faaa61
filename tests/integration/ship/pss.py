"""The restricted Pod Security Standard, checked on a pod spec without a cluster.

Follows https://kubernetes.io/docs/concepts/security/pod-security-standards/ (baseline and
restricted controls, Linux pods), the same rules the API server's PodSecurity admission
enforces when a namespace carries ``pod-security.kubernetes.io/enforce=restricted``.
``violations`` returns one readable line per broken control; empty means admitted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_ALLOWED_VOLUMES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
})
_SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
_SECCOMP_OK = frozenset({"RuntimeDefault", "Localhost"})
_WORKLOADS = {
    "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job",
}

Obj = dict[str, Any]


def _containers(spec: Obj) -> Iterator[tuple[str, Obj]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            yield f"{field}[{container.get('name', '?')}]", container


def pod_spec_of(obj: Obj) -> Obj | None:
    """The pod spec inside a Pod, workload or CronJob, or None for other kinds."""
    kind = obj.get("kind")
    if kind == "Pod":
        return dict(obj.get("spec") or {})
    if kind in _WORKLOADS:
        return dict(obj["spec"]["template"].get("spec") or {})
    if kind == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"].get("spec") or {})
    return None


def violations(spec: Obj) -> list[str]:
    """Every restricted-profile control the pod spec breaks, as ``where: what`` lines."""
    found: list[str] = []
    pod_sc: Obj = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            found.append(f"spec.{flag}: must not be true")
    for volume in spec.get("volumes") or []:
        kinds = sorted(set(volume) - {"name"})
        if not kinds or kinds[0] not in _ALLOWED_VOLUMES:
            found.append(f"volumes[{volume.get('name')}]: type {kinds} is not allowed")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            found.append(f"securityContext.sysctls: {sysctl.get('name')} is not a safe sysctl")
    found += _selinux("securityContext", pod_sc)
    if pod_sc.get("runAsUser") == 0:
        found.append("securityContext.runAsUser: must not be 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in _SECCOMP_OK:
        found.append(f"securityContext.seccompProfile.type: {pod_seccomp} is not allowed")
    if (pod_sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
        found.append("securityContext.appArmorProfile: must not be Unconfined")

    for where, container in _containers(spec):
        sc: Obj = container.get("securityContext") or {}
        if sc.get("privileged"):
            found.append(f"{where}: privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{where}: hostProcess")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"{where}: procMount must be Default")
        if sc.get("runAsNonRoot") is False or (
            sc.get("runAsNonRoot") is None and pod_sc.get("runAsNonRoot") is not True
        ):
            found.append(f"{where}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            found.append(f"{where}: runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in _SECCOMP_OK:
            found.append(f"{where}: seccompProfile.type {seccomp} is not allowed")
        if seccomp is None and pod_seccomp is None:
            found.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost")
        capabilities: Obj = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{where}: capabilities.drop must include ALL")
        extra = sorted(set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"})
        if extra:
            found.append(f"{where}: capabilities.add {extra} is not allowed")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            found.append(f"{where}: appArmorProfile must not be Unconfined")
        found += _selinux(f"{where}.securityContext", sc)
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{where}: hostPort {port['hostPort']} is not allowed")
    return found


def _selinux(where: str, sc: Obj) -> list[str]:
    options: Obj = sc.get("seLinuxOptions") or {}
    found = []
    if options.get("type") not in (None, "", "container_t", "container_init_t", "container_kvm_t"):
        found.append(f"{where}.seLinuxOptions.type: {options['type']} is not allowed")
    if options.get("user") or options.get("role"):
        found.append(f"{where}.seLinuxOptions: user and role must not be set")
    return found
