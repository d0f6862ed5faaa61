#!/usr/bin/env bash
# Install the benchmark's peers and profilers into .bench/ (git-ignored), one venv per peer.
#
# Each venv uses --system-site-packages so it shares the already-installed TensorFlow 2.21,
# numpy and uvicorn; pip only adds what the peer pins on top. Both peers pull protobuf 6.33.x,
# which TF 2.21 accepts (protobuf>=6.31.1,<8), so TF keeps working inside them (checked below).
# MLServer 1.7.1's inference worker calls asyncio.get_event_loop() with no loop, which uvloop
# >= 0.22 refuses: its venv pins uvloop 0.21.0 so MLServer runs with its default settings.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

venv() {  # venv NAME PACKAGE...
  local name=$1; shift
  [ -x ".bench/$name/bin/python" ] || "$PYTHON" -m venv --system-site-packages ".bench/$name"
  ".bench/$name/bin/pip" install --quiet "$@"
}

venv kserve kserve==0.21.0
venv mlserver mlserver==1.7.1 uvloop==0.21.0
venv tools py-spy==0.4.3 pyinstrument==5.1.3

for name in kserve mlserver; do
  TF_CPP_MIN_LOG_LEVEL=3 ".bench/$name/bin/python" -c \
    "import tensorflow as tf, google.protobuf as pb, $name; print('$name venv: TF', tf.__version__, 'protobuf', pb.__version__)" \
    2>/dev/null
done
[ -x .tools/bin/wrk ] || command -v wrk >/dev/null || { echo "wrk missing: make tools installs it into .tools/bin" >&2; exit 1; }
echo "ready: python -m bench.runtime --help"
