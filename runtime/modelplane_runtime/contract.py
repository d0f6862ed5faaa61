"""Facts about the runtime that the operator relies on: ports, paths, variables, metric names.

Dependency-free on purpose: the operator imports this module (and only modules like it),
never TensorFlow. Changing a value here changes the pods the operator renders.
"""

from typing import Final

HTTP_PORT: Final = 8080
"""Container port of the runtime's HTTP server (v1, v2, /metrics)."""

MODEL_MOUNT_PATH: Final = "/mnt/models"
"""Where the storage initializer puts the model and the runtime reads it."""

ENV_PREFIX: Final = "MODELPLANE_"

# Environment variables the operator sets on runtime pods (see settings.RuntimeSettings).
ENV_MODEL_NAME: Final = "MODELPLANE_MODEL_NAME"
ENV_MODEL_PATH: Final = "MODELPLANE_MODEL_PATH"
ENV_MODEL_VERSION: Final = "MODELPLANE_MODEL_VERSION"
ENV_MODEL_FORMAT: Final = "MODELPLANE_MODEL_FORMAT"
ENV_PORT: Final = "MODELPLANE_PORT"
ENV_MAX_BATCH_SIZE: Final = "MODELPLANE_MAX_BATCH_SIZE"
ENV_MAX_LATENCY_MS: Final = "MODELPLANE_MAX_LATENCY_MS"
ENV_LOG_LEVEL: Final = "MODELPLANE_LOG_LEVEL"
ENV_DRAIN_TIMEOUT_S: Final = "MODELPLANE_DRAIN_TIMEOUT_S"
ENV_SIGNATURE_NAME: Final = "MODELPLANE_SIGNATURE_NAME"
ENV_PROCESSING: Final = "MODELPLANE_PROCESSING"
"""Pre/post-processing config as JSON (the modelplane.yaml schema); wins over the file."""
ENV_AUTH_TOKENS_DIR: Final = "MODELPLANE_AUTH_TOKENS_DIR"
"""A mounted Secret: every file holds one accepted bearer token."""
ENV_TLS_CERT_FILE: Final = "MODELPLANE_TLS_CERT_FILE"
ENV_TLS_KEY_FILE: Final = "MODELPLANE_TLS_KEY_FILE"
ENV_GPU_MEMORY_GROWTH: Final = "MODELPLANE_GPU_MEMORY_GROWTH"
"""TensorFlow takes GPU memory as it needs it (default true) instead of nearly all at start."""
ENV_GPU_MEMORY_LIMIT_MB: Final = "MODELPLANE_GPU_MEMORY_LIMIT_MB"
"""Most GPU memory one runtime process may use, per GPU (unset: no cap)."""

# Storage initializer (`modelplane fetch`) credentials, from the model's credentialsSecret.
ENV_STORAGE_BEARER_TOKEN: Final = "MODELPLANE_STORAGE_BEARER_TOKEN"
ENV_STORAGE_USERNAME: Final = "MODELPLANE_STORAGE_USERNAME"
ENV_STORAGE_PASSWORD: Final = "MODELPLANE_STORAGE_PASSWORD"

# Health endpoints (Open Inference Protocol); the operator's probes point here.
LIVE_PATH: Final = "/v2/health/live"
READY_PATH: Final = "/v2/health/ready"
METRICS_PATH: Final = "/metrics"

# Prometheus metric names exposed on METRICS_PATH; the operator aggregates these.
METRIC_REQUESTS: Final = "modelplane_requests_total"
"""Counter; labels: model, protocol (v1|v2), code (HTTP status)."""
METRIC_REQUEST_LATENCY: Final = "modelplane_request_duration_seconds"
"""Histogram of whole-request latency; labels: model, protocol."""
METRIC_INFERENCE_LATENCY: Final = "modelplane_inference_duration_seconds"
"""Histogram of model-call latency (one observation per batch); labels: model."""
METRIC_IN_FLIGHT: Final = "modelplane_requests_in_flight"
"""Gauge of requests being served; labels: model."""
METRIC_BATCH_SIZE: Final = "modelplane_batch_size"
"""Histogram of rows per model call; labels: model."""
METRIC_MODEL_LOAD: Final = "modelplane_model_load_seconds"
"""Gauge of seconds the last load of each model version took; labels: model, version."""
METRIC_MODEL_VERSION_STATE: Final = "modelplane_model_version_state"
"""Gauge, 1 for each listed version's current state; labels: model, version, state
(LOADING, AVAILABLE, UNLOADING, END: TF Serving's names)."""
METRIC_MODEL_LOAD_FAILURES: Final = "modelplane_model_load_failures_total"
"""Counter of versions that failed to load; labels: model."""
METRIC_REPOSITORY_POLLS: Final = "modelplane_repository_polls_total"
"""Counter of looks at the model repository for new versions (``--poll-seconds``); labels:
model. Stalls if polling stopped."""
METRIC_MODEL_SIZE: Final = "modelplane_model_size_bytes"
"""Gauge of each loaded model version's size on disk in bytes; labels: model, version."""

# Resource metrics (processes.py, gpus.py). Process series follow prometheus_client's
# process collector (same meaning and units, modelplane_ prefix) with a ``worker`` label:
# "0".."N-1" per server process, "supervisor" for the parent of ``--workers N`` (per
# process, never summed: sum by pod for a replica's total).
METRIC_PROCESS_CPU: Final = "modelplane_process_cpu_seconds_total"
"""Counter of user + system CPU seconds; labels: worker."""
METRIC_PROCESS_RESIDENT_MEMORY: Final = "modelplane_process_resident_memory_bytes"
"""Gauge of resident memory (RSS) in bytes; labels: worker."""
METRIC_PROCESS_VIRTUAL_MEMORY: Final = "modelplane_process_virtual_memory_bytes"
"""Gauge of virtual memory in bytes; labels: worker."""
METRIC_PROCESS_OPEN_FDS: Final = "modelplane_process_open_fds"
"""Gauge of open file descriptors; labels: worker."""
METRIC_PROCESS_MAX_FDS: Final = "modelplane_process_max_fds"
"""Gauge of the file-descriptor limit (soft RLIMIT_NOFILE); labels: worker."""
METRIC_PROCESS_START_TIME: Final = "modelplane_process_start_time_seconds"
"""Gauge of the process start time in seconds since the Unix epoch; labels: worker."""
# Per visible GPU (NVML), only where NVML answers: no GPU, no series. Labels: gpu (the
# device's position among those CUDA_VISIBLE_DEVICES shows, as TensorFlow numbers them)
# and uuid (NVML's, stable across restarts).
METRIC_GPU_UTILIZATION: Final = "modelplane_gpu_utilization_ratio"
"""Gauge 0..1: share of the last sample period a kernel ran on the GPU; labels: gpu, uuid."""
METRIC_GPU_MEMORY_USED: Final = "modelplane_gpu_memory_used_bytes"
"""Gauge of device memory in use, all processes together; labels: gpu, uuid."""
METRIC_GPU_MEMORY_TOTAL: Final = "modelplane_gpu_memory_total_bytes"
"""Gauge of device memory in total; labels: gpu, uuid."""
METRIC_GPU_POWER: Final = "modelplane_gpu_power_watts"
"""Gauge of the board's power draw in watts; labels: gpu, uuid."""
METRIC_GPU_TEMPERATURE: Final = "modelplane_gpu_temperature_celsius"
"""Gauge of the GPU core temperature in degrees Celsius; labels: gpu, uuid."""

PVC_MOUNT_ROOT: Final = "/mnt/pvc"
"""A ``pvc://<claim>/<path>`` model is mounted read-only at ``<PVC_MOUNT_ROOT>/<claim>``."""
