"""Which tf.distribute strategy a training run uses: all of this machine's GPUs.

    more than one GPU      -> MirroredStrategy (one machine, all its GPUs)
    otherwise              -> the default strategy (one device)

Training builds and compiles its model under ``strategy.scope()``; Keras'
``fit`` then splits each batch across the replicas. The batch size in a run's
config is the global batch.

Two environment variables make the mirrored path usable without GPUs (the
test suite uses them, and they are handy to try scaling on a big CPU box):
``PAWLAB_LOGICAL_CPUS=N`` splits the CPU into N logical devices, and
``PAWLAB_STRATEGY=mirrored`` mirrors over all logical devices even when they
are CPUs. Logical devices must be configured before TensorFlow initialises
its runtime, so ``configure_devices()`` runs first thing in a training process.

A run trains on one machine. There is no multi-machine path: Keras 3's
``fit`` does not work under MultiWorkerMirroredStrategy (its chief fails
with "PerReplica ... unsupported type" and the other worker's run is left
running forever: keras-team/keras#20585), so a cluster description in the
environment is not read here.
"""

from __future__ import annotations

import os


def configure_devices() -> None:
    """Apply PAWLAB_LOGICAL_CPUS; call before any other TensorFlow work."""
    count = int(os.environ.get("PAWLAB_LOGICAL_CPUS", "0") or 0)
    if count < 2:
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) == count:
        return
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])


def strategy_for_environment():
    """The tf.distribute strategy for this process (see module docstring)."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if os.environ.get("PAWLAB_STRATEGY", "").lower() == "mirrored":
        # Fewer than two GPUs: mirror over the (logical) CPUs instead.
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        # NCCL all-reduce needs GPUs; on CPUs gradients are summed on one device.
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    return tf.distribute.get_strategy()
