#!/usr/bin/env bash
# Build the operator, runtime and balancer images, and load them into a kind cluster.
#
#   scripts/images.sh build        # docker build the three images
#   scripts/images.sh kind-load    # kind load docker-image them into $KIND_CLUSTER
#   scripts/images.sh all          # both steps
#
# Environment (defaults in brackets):
#   MODELPLANE_E2E_OPERATOR_IMAGE  [ghcr.io/modelplane/operator:dev]
#   MODELPLANE_E2E_RUNTIME_IMAGE   [ghcr.io/modelplane/runtime:dev]
#   MODELPLANE_E2E_BALANCER_IMAGE  [ghcr.io/modelplane/balancer:dev]
#   RUNTIME_TENSORFLOW             [the Dockerfile's default, tensorflow-cpu==2.21.0];
#                                  e.g. "tensorflow[and-cuda]==2.21.0" for a GPU runtime
#   KIND_CLUSTER                   [modelplane]
#   DOCKER                         [docker]   (podman works too)
set -euo pipefail

cd "$(dirname "$0")/.."
OPERATOR_IMAGE="${MODELPLANE_E2E_OPERATOR_IMAGE:-ghcr.io/modelplane/operator:dev}"
RUNTIME_IMAGE="${MODELPLANE_E2E_RUNTIME_IMAGE:-ghcr.io/modelplane/runtime:dev}"
BALANCER_IMAGE="${MODELPLANE_E2E_BALANCER_IMAGE:-ghcr.io/modelplane/balancer:dev}"
KIND_CLUSTER="${KIND_CLUSTER:-modelplane}"
DOCKER="${DOCKER:-docker}"

build() {
    echo "==> building ${OPERATOR_IMAGE}"
    "${DOCKER}" build --file operator/Dockerfile --tag "${OPERATOR_IMAGE}" .
    local runtime_args=()
    if [[ -n "${RUNTIME_TENSORFLOW:-}" ]]; then
        runtime_args+=(--build-arg "TENSORFLOW=${RUNTIME_TENSORFLOW}")
    fi
    echo "==> building ${RUNTIME_IMAGE}"
    "${DOCKER}" build --file runtime/Dockerfile "${runtime_args[@]}" --tag "${RUNTIME_IMAGE}" .
    # Both images must run the CLI, the operator's without TensorFlow.
    "${DOCKER}" run --rm "${OPERATOR_IMAGE}" --help >/dev/null
    if "${DOCKER}" run --rm --entrypoint python "${OPERATOR_IMAGE}" -c "import tensorflow" 2>/dev/null; then
        echo "error: the operator image contains TensorFlow" >&2
        exit 1
    fi
    "${DOCKER}" run --rm "${RUNTIME_IMAGE}" fetch --help >/dev/null
    echo "==> building ${BALANCER_IMAGE}"
    "${DOCKER}" build --file balancer/Dockerfile --tag "${BALANCER_IMAGE}" .
    "${DOCKER}" run --rm "${BALANCER_IMAGE}" balancer --help >/dev/null
    if "${DOCKER}" run --rm --entrypoint python "${BALANCER_IMAGE}" -c "import tensorflow" 2>/dev/null; then
        echo "error: the balancer image contains TensorFlow" >&2
        exit 1
    fi
}

kind_load() {
    command -v kind >/dev/null || { echo "error: kind is not installed" >&2; exit 1; }
    echo "==> loading images into kind cluster ${KIND_CLUSTER}"
    kind load docker-image --name "${KIND_CLUSTER}" "${OPERATOR_IMAGE}" "${RUNTIME_IMAGE}" \
        "${BALANCER_IMAGE}"
}

case "${1:-all}" in
    build) build ;;
    kind-load) kind_load ;;
    all) build; kind_load ;;
    *) echo "usage: $0 [build|kind-load|all]" >&2; exit 2 ;;
esac
