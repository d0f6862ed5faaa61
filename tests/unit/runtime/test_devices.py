"""TensorFlow on GPUs: the settings, the --workers rule, and placement (CPU here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelplane_runtime import contract
from modelplane_runtime.dataplane.devices import (
    check_workers,
    configure_gpus,
    gpu_sharing,
    short_device,
)
from modelplane_runtime.dataplane.model import import_tensorflow, load_model
from modelplane_runtime.dataplane.repository import VersionSource, size_on_disk
from modelplane_runtime.settings import RuntimeSettings, SettingsError, load_settings

GIB = 2**30


def test_gpu_settings_default_to_growth_without_a_cap() -> None:
    settings = RuntimeSettings()
    assert settings.gpu_memory_growth is True
    assert settings.gpu_memory_limit_mb is None


def test_gpu_settings_come_from_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(contract.ENV_GPU_MEMORY_GROWTH, "false")
    monkeypatch.setenv(contract.ENV_GPU_MEMORY_LIMIT_MB, "4096")
    settings = load_settings()
    assert settings.gpu_memory_growth is False
    assert settings.gpu_memory_limit_mb == 4096


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        (contract.ENV_GPU_MEMORY_LIMIT_MB, "0"),
        (contract.ENV_GPU_MEMORY_LIMIT_MB, "-5"),
        (contract.ENV_GPU_MEMORY_LIMIT_MB, "lots"),
        (contract.ENV_GPU_MEMORY_GROWTH, "sometimes"),
    ],
)
def test_bad_gpu_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("/job:localhost/replica:0/task:0/device:GPU:0", "GPU:0"),
        ("/job:localhost/replica:0/task:0/device:CPU:0", "CPU:0"),
        ("/physical_device:GPU:1", "GPU:1"),
        ("/device:gpu:2", "GPU:2"),
    ],
)
def test_short_device(name: str, short: str) -> None:
    assert short_device(name) == short


def test_one_worker_or_no_gpu_needs_no_word() -> None:
    assert gpu_sharing(1, False, None, [80 * GIB]) is None
    assert gpu_sharing(4, False, None, []) is None


def test_workers_without_growth_or_cap_are_refused() -> None:
    verdict = gpu_sharing(2, False, None, [80 * GIB])
    assert verdict is not None and verdict.refuse
    assert contract.ENV_GPU_MEMORY_GROWTH in verdict.message
    assert contract.ENV_GPU_MEMORY_LIMIT_MB in verdict.message
    assert "40960 MB" in verdict.message  # the cap that would fit two workers


def test_caps_that_do_not_fit_are_refused_and_caps_that_fit_pass() -> None:
    verdict = gpu_sharing(4, True, 30_000, [80 * GIB, 40 * GIB])
    assert verdict is not None and verdict.refuse
    assert "120000 MB" in verdict.message and "40960 MB" in verdict.message  # the smaller GPU
    assert "10240 MB" in verdict.message
    assert gpu_sharing(4, True, 10_240, [80 * GIB, 40 * GIB]) is None
    assert gpu_sharing(4, False, 10_240, [40 * GIB]) is None  # a cap makes growth moot


def test_workers_with_growth_and_no_cap_start_with_a_warning() -> None:
    verdict = gpu_sharing(3, True, None, [80 * GIB])
    assert verdict is not None and not verdict.refuse
    assert contract.ENV_GPU_MEMORY_LIMIT_MB in verdict.message


def test_check_workers_reads_the_settings() -> None:
    settings = RuntimeSettings(workers=2, gpu_memory_growth=False)
    verdict = check_workers(settings, totals=[16 * GIB])
    assert verdict is not None and verdict.refuse
    assert check_workers(RuntimeSettings(workers=1), totals=[16 * GIB]) is None
    # On this machine NVML has no library: no GPU known, nothing to say, no error.
    assert check_workers(settings) is None


def test_on_a_cpu_only_machine_configuring_gpus_is_a_no_op() -> None:
    tf = import_tensorflow()
    assert configure_gpus(RuntimeSettings(gpu_memory_limit_mb=1024), tf) == []
    assert tf.config.list_logical_devices("GPU") == []


def test_a_savedmodel_and_a_keras_model_are_placed_on_the_cpu(
    demo_model_dir: Path, keras_model_file: Path
) -> None:
    saved = load_model(VersionSource(1, demo_model_dir / "1", "savedmodel"))
    assert saved.devices == ("CPU:0",)
    keras = load_model(VersionSource(1, keras_model_file, "keras"))
    assert keras.devices == ("CPU:0",)


def test_size_on_disk_counts_every_file_once(tmp_path: Path) -> None:
    (tmp_path / "variables").mkdir()
    (tmp_path / "saved_model.pb").write_bytes(b"x" * 1000)
    (tmp_path / "variables" / "variables.data").write_bytes(b"y" * 234)
    (tmp_path / "variables" / "link").symlink_to(tmp_path / "saved_model.pb")
    (tmp_path / "dangling").symlink_to(tmp_path / "absent")
    assert size_on_disk(tmp_path) == 1000 + 234 + 1000  # a linked file counts its target
    assert size_on_disk(tmp_path / "saved_model.pb") == 1000
