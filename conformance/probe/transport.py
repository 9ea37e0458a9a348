"""The transport interface of the in-guest driver.

The MMIO and PCI transport layers implement it; the device/ring layer (virtqueues,
requests, interrupts) is written against it only, so one ring driver serves both.
Every method is a plain register sequence; implementations record each access in
``self.trace`` as (op, where, width, value) for evidence.
"""


class Transport:
    """Abstract: what a virtio driver needs from a transport."""

    trace: list

    # -- device status and reset (basic facilities: device status field)
    def reset(self):
        """Write 0 to the status and wait (bounded) until the device reads it back as 0."""
        raise NotImplementedError

    def get_status(self):
        raise NotImplementedError

    def set_status(self, value):
        raise NotImplementedError

    # -- features
    def device_features(self):
        """All offered feature bits as one int (every 32-bit bank the transport has)."""
        raise NotImplementedError

    def set_driver_features(self, value):
        raise NotImplementedError

    # -- queues
    def queue_max(self, index):
        """Largest size queue ``index`` supports; 0 if the queue does not exist."""
        raise NotImplementedError

    def setup_queue(self, index, size, desc, driver, device):
        """Program size and the three ring addresses (guest-physical) of queue ``index``.

        Legacy transports take one page-aligned address (``desc``) and derive the others.
        """
        raise NotImplementedError

    def enable_queue(self, index):
        raise NotImplementedError

    def notify(self, index):
        raise NotImplementedError

    # -- interrupts
    def read_interrupt(self):
        """(used_buffer, config_change) as seen by the transport (and acknowledged)."""
        raise NotImplementedError

    # -- device configuration space
    def config_read(self, offset, width):
        raise NotImplementedError

    def config_write(self, offset, value, width):
        raise NotImplementedError

    def config_generation(self):
        raise NotImplementedError

    def close(self):
        pass
