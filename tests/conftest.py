"""Root of the test suite: fixture plugins live in tests/fixtures, one module per area."""

import os

# Runtimes the tests start serve gRPC only where a test asks for it (``--grpc-port``, a free
# port): many run at once on 127.0.0.1, and the default port 8081 fits only one of them.
os.environ.setdefault("MODELPLANE_GRPC_PORT", "0")

pytest_plugins = [
    "tests.fixtures.models",  # TensorFlow test models built on demand (runtime)
    "tests.fixtures.runtime_server",  # the runtime as a real server process
    "tests.fixtures.kube",  # the Kubernetes API emulator, kubeconfig, kubectl and helm
    "tests.fixtures.cluster",  # --e2e and the real-cluster fixtures
    "tests.fixtures.tls",  # a self-signed certificate made by openssl
    "tests.fixtures.object_stores",  # S3 (moto), GCS emulator, Azurite, a cutting TCP proxy
]
