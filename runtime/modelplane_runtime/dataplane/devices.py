"""Where TensorFlow runs the model: GPU memory settings, placement, and workers on one GPU.

By default TensorFlow maps nearly all of every visible GPU's memory when it first touches
the GPU (TensorFlow's GPU guide, "Limiting GPU memory growth"), so a second process on the
same GPU (another model, or ``modelplane serve --workers 2``) fails out of memory. Here:

- ``MODELPLANE_GPU_MEMORY_GROWTH`` (default true) turns on memory growth: TensorFlow takes
  memory as the model needs it (``tf.config.experimental.set_memory_growth``, what
  ``TF_FORCE_GPU_ALLOW_GROWTH=true`` does).
- ``MODELPLANE_GPU_MEMORY_LIMIT_MB`` caps one process at that much memory per GPU (a
  logical device with ``memory_limit``, like TF Serving's
  ``--per_process_gpu_memory_fraction`` but in megabytes); with a cap, growth does not apply
  (TensorFlow refuses both on one device).

Both must be applied before TensorFlow initialises the GPUs, which is why ``configure_gpus``
runs as soon as TensorFlow is imported to load the first model (model.py's ``prepare``).
``placed_devices`` names the devices the model's variables live on (or, for a model
without variables, where TensorFlow places ops by default), logged at load and listed by
``/v2``. ``gpu_sharing`` is the rule ``modelplane serve --workers N`` applies before it
starts any worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from modelplane_runtime import contract
from modelplane_runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

_configured = threading.Lock()
_done = False


def short_device(name: str) -> str:
    """``/job:localhost/replica:0/task:0/device:GPU:0`` (or ``/physical_device:GPU:0``)
    -> ``GPU:0``, the short form TensorFlow accepts in ``tf.device``."""
    return ":".join(name.rsplit("/", 1)[-1].split(":")[-2:]).upper()


def configure_gpus(settings: RuntimeSettings, tf: Any) -> list[str]:
    """Apply the GPU memory settings to every GPU TensorFlow sees (once per process).

    Returns the GPUs' names (empty on a CPU-only machine). Too late (TensorFlow already
    initialised its GPUs) is a warning, not a failure: the model still serves.
    """
    global _done
    gpus = tf.config.list_physical_devices("GPU")
    with _configured:
        if _done or not gpus:
            return [short_device(gpu.name) for gpu in gpus]
        _done = True
        limit = settings.gpu_memory_limit_mb
        try:
            for gpu in gpus:
                if limit is not None:
                    tf.config.set_logical_device_configuration(
                        gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)]
                    )
                elif settings.gpu_memory_growth:
                    tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError) as exc:
            log.warning("GPU memory settings not applied (TensorFlow already started its "
                        "GPUs): %s", exc)
    names = [short_device(gpu.name) for gpu in gpus]
    policy = (
        f"at most {limit} MB per process" if limit is not None
        else "memory growth on" if settings.gpu_memory_growth
        else "TensorFlow's default: nearly all memory at start"
    )
    log.info("TensorFlow sees %d GPU(s): %s (%s)", len(names), ", ".join(names), policy,
             extra={"gpus": names})
    return names


def placed_devices(tf: Any, functions: Iterable[Any]) -> tuple[str, ...]:
    """The devices holding the variables of ``functions`` (concrete functions), sorted;
    without variables, the device TensorFlow runs ops on by default."""
    devices = {
        short_device(variable.device)
        for function in functions
        for variable in getattr(function, "variables", ())
        if getattr(variable, "device", "")
    }
    if not devices:
        devices = {short_device(tf.identity(tf.constant(0.0)).device)}
    return tuple(sorted(devices))


class Sharing(NamedTuple):
    """What ``--workers N`` on GPUs would do: refuse to start, or start with a warning."""

    refuse: bool
    message: str


def gpu_sharing(
    workers: int, growth: bool, limit_mb: int | None, totals: Sequence[float]
) -> Sharing | None:
    """The verdict on ``workers`` processes sharing GPUs of ``totals`` bytes each; None
    when there is nothing to say (one worker, no GPU, or caps that fit)."""
    if workers <= 1 or not totals:
        return None
    if limit_mb is not None:
        need = workers * limit_mb * 2**20
        small = min(totals)
        if need > small:
            return Sharing(True, (
                f"--workers {workers} with {contract.ENV_GPU_MEMORY_LIMIT_MB}={limit_mb} needs "
                f"{need // 2**20} MB per GPU, but a GPU has {int(small) // 2**20} MB: lower "
                f"the limit to at most {int(small) // 2**20 // workers} MB or run fewer workers"
            ))
        return None
    if not growth:
        return Sharing(True, (
            f"--workers {workers} on a GPU with {contract.ENV_GPU_MEMORY_GROWTH}=false: each "
            f"worker's TensorFlow would claim nearly all GPU memory at start and the second "
            f"would fail; turn memory growth on or set {contract.ENV_GPU_MEMORY_LIMIT_MB} "
            f"(at most {int(min(totals)) // 2**20 // workers} MB for {workers} workers)"
        ))
    return Sharing(False, (
        f"--workers {workers} share each GPU with memory growth and no cap: every worker "
        f"loads its own model copy and takes GPU memory as it needs it; set "
        f"{contract.ENV_GPU_MEMORY_LIMIT_MB} to give each a fixed share"
    ))


def check_workers(
    settings: RuntimeSettings, totals: Sequence[float] | None = None
) -> Sharing | None:
    """``gpu_sharing`` for ``settings``, the GPUs' memory read from NVML (no TensorFlow:
    the supervisor of ``--workers`` never imports it). No NVML: nothing to say."""
    if settings.workers <= 1:
        return None
    if totals is None:
        from modelplane_runtime.gpus import GpuCollector

        collector = GpuCollector(announce=False)
        try:
            totals = [r.memory_total for r in collector.readings() if r.memory_total]
        finally:
            collector.close()
    return gpu_sharing(
        settings.workers, settings.gpu_memory_growth, settings.gpu_memory_limit_mb, totals
    )
