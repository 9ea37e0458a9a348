"""virtio-pci access through sysfs: the config file and the resourceN files."""

import os
import struct

SYSFS_PCI = "/sys/bus/pci/devices"


class PciFunction:
    def __init__(self, address):
        self.address = address
        self.path = os.path.join(SYSFS_PCI, address)
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"no PCI function {address} in sysfs")
        self.trace = []

    def config_read(self, offset, width):
        with open(os.path.join(self.path, "config"), "rb") as f:
            data = os.pread(f.fileno(), width, offset)
        if len(data) != width:
            raise OSError(f"short config read at 0x{offset:x}")
        value = int.from_bytes(data, "little")
        self.trace.append(("cfg-r", offset, width, value))
        return value

    def config_write(self, offset, value, width):
        with open(os.path.join(self.path, "config"), "r+b", buffering=0) as f:
            os.pwrite(f.fileno(), value.to_bytes(width, "little"), offset)
        self.trace.append(("cfg-w", offset, width, value))

    def driver(self):
        link = os.path.join(self.path, "driver")
        return os.path.basename(os.readlink(link)) if os.path.islink(link) else None

    def unbind(self):
        drv = self.driver()
        if drv:
            with open(os.path.join(self.path, "driver", "unbind"), "w") as f:
                f.write(self.address)
        return drv


def u16(data, off):
    return struct.unpack_from("<H", data, off)[0]
