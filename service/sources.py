"""Build the configured SampleSource (simulated, replay, piezo or IMU)."""

from __future__ import annotations

import logging

from hardware.block import SampleSource
from service.config import SensorConfig, sim_start_time

logger = logging.getLogger(__name__)


def make_source(cfg: SensorConfig) -> tuple[SampleSource, str]:
    """The source the config names, and a short label of it for the night record.

    Hardware libraries are imported inside the adapters, so this works on any laptop until a
    piezo or IMU is asked for. Raises RecordingError / SensorError with a clear message.
    """
    if cfg.kind == "simulated":
        from hardware.simulated import SimulatedNight, SimulatedSource

        night = SimulatedNight(
            seed=cfg.seed, rate_hz=cfg.rate_hz, duration_s=cfg.sim_duration_s, glitches=cfg.sim_glitches
        )
        label = f"simulated(seed={cfg.seed}, rate_hz={cfg.rate_hz:g}, speed={cfg.speed:g})"
        start = sim_start_time(cfg.sim_start)
        return SimulatedSource(night, speed=cfg.speed, block_s=cfg.block_s, start=start), label
    if cfg.kind == "replay":
        from hardware.replay import ReplaySource, load_recording

        assert cfg.replay_path is not None  # the config validator guarantees it
        rec = load_recording(
            cfg.replay_path,
            column=cfg.replay_column,
            rate_hz=cfg.replay_rate_hz,
            time_column=cfg.replay_time_column,
            time_unit=cfg.replay_time_unit,
        )
        label = f"replay({cfg.replay_path}, speed={cfg.speed:g})"
        start = sim_start_time(cfg.sim_start)
        return ReplaySource(rec, speed=cfg.speed, block_s=cfg.block_s, start=start), label
    if cfg.kind == "piezo":
        from hardware.piezo import PiezoSource

        label = f"piezo({cfg.adc_chip} ch{cfg.spi_channel}, rate_hz={cfg.rate_hz:g})"
        piezo = PiezoSource(
            chip=cfg.adc_chip,
            channel=cfg.spi_channel,
            differential=cfg.differential,
            rate_hz=cfg.rate_hz,
            block_s=cfg.block_s,
            spi_device=cfg.spi_device,
            fill_gaps=cfg.fill_gaps,
        )
        return piezo, label
    from hardware.imu import ImuSource

    label = f"imu(bus {cfg.i2c_bus} 0x{cfg.i2c_address:02x}, {cfg.imu_axis}, rate_hz={cfg.rate_hz:g})"
    imu = ImuSource(
        bus=cfg.i2c_bus,
        address=cfg.i2c_address,
        rate_hz=cfg.rate_hz,
        axis=cfg.imu_axis,
        block_s=cfg.block_s,
        accel_range_g=cfg.imu_accel_range_g,
        fill_gaps=cfg.fill_gaps,
    )
    return imu, label
