#!/usr/bin/env bash
# The e2e suite from nothing, on a machine with Docker (or podman) and kind:
# create the cluster from kind-config.yaml, build and load both images, run tests/e2e, then
# serve the demo model on http://localhost:8080 through the config's host port mapping.
#
#   scripts/e2e-kind.sh              # keep the cluster afterwards (fast re-runs)
#   scripts/e2e-kind.sh --teardown   # delete the cluster at the end, pass or fail
#
# Environment: KIND_CLUSTER [modelplane], KIND_NODE_IMAGE [kind's default], PYTHON
# [python3], SKIP_BUILD=1 (reuse loaded images), PYTEST_ARGS (extra pytest arguments),
# and the image names of scripts/images.sh.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
KIND_CLUSTER="${KIND_CLUSTER:-modelplane}"
PYTHON="${PYTHON:-python3}"
TEARDOWN=0
for arg in "$@"; do
    case "${arg}" in
        --teardown) TEARDOWN=1 ;;
        *) echo "usage: $0 [--teardown]" >&2; exit 2 ;;
    esac
done
export KIND_CLUSTER
export MODELPLANE_E2E_OPERATOR_IMAGE="${MODELPLANE_E2E_OPERATOR_IMAGE:-ghcr.io/modelplane/operator:dev}"
export MODELPLANE_E2E_RUNTIME_IMAGE="${MODELPLANE_E2E_RUNTIME_IMAGE:-ghcr.io/modelplane/runtime:dev}"
export MODELPLANE_E2E_BALANCER_IMAGE="${MODELPLANE_E2E_BALANCER_IMAGE:-ghcr.io/modelplane/balancer:dev}"

need() { command -v "$1" >/dev/null || { echo "error: $1 is required ($2)" >&2; exit 1; }; }
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need "${DOCKER:-docker}" "kind runs its nodes as containers"
need "${PYTHON}" "the test suite is Python"

step() { echo; echo "==> $*"; }

step "tools: kubectl 1.35 and helm 4 into .tools/bin"
"${PYTHON}" scripts/install_tools.py
export PATH="${ROOT}/.tools/bin:${PATH}"

if ! "${PYTHON}" -c "import modelplane_runtime, pytest, httpx, yaml" 2>/dev/null; then
    step "python: installing the package with its dev extra"
    "${PYTHON}" -m pip install -e ".[dev]"
fi

KUBECONFIG="${ROOT}/.tools/kind-${KIND_CLUSTER}.kubeconfig"
export KUBECONFIG

# shellcheck disable=SC2329  # run by the EXIT trap
cleanup() {
    if [[ "${TEARDOWN}" == 1 ]]; then
        step "teardown: deleting kind cluster ${KIND_CLUSTER}"
        kind delete cluster --name "${KIND_CLUSTER}"
    else
        echo
        echo "cluster ${KIND_CLUSTER} kept: export KUBECONFIG=${KUBECONFIG}"
        echo "(delete it with: kind delete cluster --name ${KIND_CLUSTER})"
    fi
}
trap cleanup EXIT

if kind get clusters 2>/dev/null | grep -qx "${KIND_CLUSTER}"; then
    step "cluster: reusing kind cluster ${KIND_CLUSTER}"
else
    step "cluster: creating kind cluster ${KIND_CLUSTER}"
    image_args=()
    if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then
        image_args+=(--image "${KIND_NODE_IMAGE}")
    fi
    kind create cluster --name "${KIND_CLUSTER}" --config kind-config.yaml \
        "${image_args[@]}" --wait 180s
fi
kind get kubeconfig --name "${KIND_CLUSTER}" > "${KUBECONFIG}"
kubectl version

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    step "images: build and load into kind"
    scripts/images.sh all
fi

step "e2e: tests/e2e against ${KIND_CLUSTER}"
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of words on purpose
"${PYTHON}" -m pytest tests/e2e --e2e -v -rs -p no:cacheprovider ${PYTEST_ARGS:-}

step "host port: the demo model on http://localhost:8080 (kind-config.yaml maps NodePort 30080)"
kubectl apply -f manifests/samples/seed-mlp.yaml
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Service
metadata:
  name: seed-mlp-host
spec:
  type: NodePort
  selector:
    modelplane.io/balancer: seed-mlp    # through the balancer, as the Service seed-mlp
  ports:
    - name: http
      port: 8080
      targetPort: http
      nodePort: 30080
YAML
kubectl wait --for=condition=Ready md/seed-mlp --timeout=600s
kubectl get md
for attempt in $(seq 1 30); do
    if curl -fsS localhost:8080/v1/models/seed-mlp:predict \
        -d '{"instances": [[1,2,3,4,5,6,7,8]]}'; then
        echo
        echo "e2e-kind: all passed"
        exit 0
    fi
    echo "waiting for the host port (attempt ${attempt})"
    sleep 2
done
echo "error: http://localhost:8080 did not answer" >&2
exit 1
