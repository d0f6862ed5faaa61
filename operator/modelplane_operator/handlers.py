"""kopf wiring: events in, Controller calls out, errors mapped to kopf's retry semantics.

- An invalid spec is a ``kopf.PermanentError``: retrying cannot fix it, the next edit
  of the spec is a new change and is handled again.
- API conflicts, throttling, server and network errors are ``kopf.TemporaryError`` with a
  growing delay (or the server's ``Retry-After``, when longer); a child the API server
  refuses (422 from validation or admission, 403 from RBAC or quota) sets ``ChildRejected``
  in the status and is retried slowly by the controller, since an administrator can fix
  the cause without touching the object; for kopf the change counts as handled, so the
  next spec change is handled at once. Other refusals are retried slowly by kopf.
- kopf wakes a delayed retry with a patch of its own; if that write (or the one storing
  the retry) fails for good, kopf forgets the object until its next event. The controller
  is told of every scheduled retry and reconciles an object that kopf then leaves alone
  for too long itself (resync.py).
- Children and Pods are not watched through kopf (see watch.py): they only feed a cache.
- Bodies are passed on as shallow copies: kopf never mutates a received body in place
  (a new event brings a new object), and the controller treats them as read-only.
- No deletion handler: it would make kopf put a finalizer on every object (one more write
  each). Children go with their owner through ownerReferences, and the controller deletes
  them too when it sees the deletion (Controller.md_seen), retrying until they are gone.
"""

from __future__ import annotations

from typing import Any

import kopf
from modelplane_balancer import contract as balancer

from modelplane_operator.builders.render import CHILD_KINDS, OPTIONAL_KINDS
from modelplane_operator.controller import Controller
from modelplane_operator.kube import ApiError, resource_tuple
from modelplane_operator.reconciler import SpecRejected
from modelplane_operator.spec import GROUP, PLURAL, VERSION

MODEL_DEPLOYMENTS = (GROUP, VERSION, PLURAL)
CHILDREN = tuple(resource_tuple(api_version, kind)
                 for api_version, kind in (*CHILD_KINDS, *OPTIONAL_KINDS))
"""Children the operator writes and watches (through watch.py, not kopf): for RBAC."""
PODS = resource_tuple("v1", "Pod")
"""Runtime and balancer Pods, watched (through watch.py) for readiness, restarts and IPs
to scrape."""
POD_METRICS = resource_tuple("metrics.k8s.io/v1beta1", "PodMetrics")
"""The runtime Pods' CPU and memory, listed once per round (podmetrics.py): for RBAC."""
GRANTED = tuple(
    (group, resource, tuple(rule["verbs"]))
    for rule in balancer.RBAC_RULES for group in rule["apiGroups"]
    for resource in rule["resources"]
)
"""(group, resource, verbs) the operator grants the balancers' Roles, and so must hold
itself: RBAC refuses to create a Role granting more than its creator has (without the
``escalate`` verb, which the operator is not given)."""

SLOW_RETRY_S = 60.0


class InvalidSpecError(kopf.PermanentError):
    """The ModelDeployment's spec is invalid; the status and an Event say which field."""


def retry_delay(retry: int, retry_after: float | None = None) -> float:
    """Exponential backoff for transient errors: 1, 2, 4 ... capped at 60 seconds; longer
    when the API server asked for longer (``Retry-After``)."""
    return max(float(min(SLOW_RETRY_S, 2 ** min(retry, 6))), retry_after or 0.0)


def configure(settings: kopf.OperatorSettings, *, standalone: bool) -> None:
    """kopf settings the operator relies on (see docs in shared/k8s-testing.md)."""
    # kopf's last-handled state goes into the status patch we send anyway: one write per
    # reconcile instead of two. The CRD keeps status.kopf from being pruned.
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage()
    settings.persistence.progress_storage = kopf.StatusProgressStorage()
    settings.peering.standalone = standalone
    settings.posting.reporting_component = "modelplane-operator"


def register(registry: kopf.OperatorRegistry, controller: Controller) -> None:
    """Register every handler on ``registry`` (nothing is registered at import time)."""

    async def reconcile(body: kopf.Body, patch: kopf.Patch, reason: str, retry: int,
                        **_: Any) -> None:
        md = dict(body)
        try:
            change = await controller.reconcile(md, trigger=str(reason))
        except SpecRejected as exc:
            for key, value in exc.status_patch.items():
                patch.status[key] = value
            raise InvalidSpecError(str(exc)) from None
        except ApiError as exc:
            delay = retry_delay(retry, exc.retry_after) if exc.transient else SLOW_RETRY_S
            # If kopf's wake-up for this retry gets lost, the controller steps in (resync.py).
            controller.retry_scheduled(md, delay)
            raise kopf.TemporaryError(str(exc), delay=delay) from exc
        for key, value in change.items():
            patch.status[key] = value

    for decorator in (kopf.on.create, kopf.on.update, kopf.on.resume):
        decorator(*MODEL_DEPLOYMENTS, registry=registry, id="reconcile")(reconcile)

    @kopf.on.event(*MODEL_DEPLOYMENTS, registry=registry)
    async def model_deployment_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        controller.md_seen(type, dict(body))
