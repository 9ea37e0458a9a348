"""The probe's command table: each area keeps its commands in its own module.

Each command takes keyword arguments (always ``location``: see the host's
``Location.to_json``) and returns a JSON-able dict of raw observations.
"""

from . import cmd_mmio, cmd_mmio_queues, cmd_pci, cmd_vq, regs
from .mmio import MmioWindow
from .pci import PciFunction


def identify(location):
    """The identity registers of the device at ``location``."""
    if location["bus"] == "mmio":
        win = MmioWindow(int(location["base"], 16), location.get("size") or 0x200)
        try:
            values = {name: win.reg(name)
                      for name in ("MagicValue", "Version", "DeviceID", "VendorID")}
            return {"bus": "mmio", "registers": values,
                    "accesses": [list(a) for a in win.trace]}
        finally:
            win.close()
    fn = PciFunction(location["address"])
    cfg = regs.PCI_CFG
    values = {
        "VendorID": fn.config_read(cfg["VendorID"], 2),
        "DeviceID": fn.config_read(cfg["DeviceID"], 2),
        "RevisionID": fn.config_read(cfg["RevisionID"], 1),
        "SubsystemVendorID": fn.config_read(cfg["SubsystemVendorID"], 2),
        "SubsystemID": fn.config_read(cfg["SubsystemID"], 2),
    }
    return {"bus": "pci", "registers": values, "driver": fn.driver(),
            "accesses": [list(a) for a in fn.trace]}


COMMANDS = {
    "identify": identify,
    **cmd_mmio.COMMANDS,  # virtio-mmio transport checks
    **cmd_pci.COMMANDS,  # virtio-pci transport checks
    **cmd_vq.COMMANDS,  # virtqueues, notifications, device status (both transports)
    **cmd_mmio_queues.COMMANDS,  # virtio-mmio queue placement and config widths
}
