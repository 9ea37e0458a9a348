"""Register offsets and constants: the one table both the probe and the checks read.

Values are from the virtio specification (1.4 CS01), written as data.
"""

VIRTIO_VENDOR_PCI = 0x1AF4
MMIO_MAGIC = 0x74726976  # "virt" in little-endian ASCII

# virtio-mmio registers (offsets from the transport base).  Version 2 ("modern") and
# Version 1 ("legacy") share the first block; legacy-only and modern-only ones follow.
MMIO = {
    "MagicValue": 0x000,
    "Version": 0x004,
    "DeviceID": 0x008,
    "VendorID": 0x00C,
    "DeviceFeatures": 0x010,
    "DeviceFeaturesSel": 0x014,
    "DriverFeatures": 0x020,
    "DriverFeaturesSel": 0x024,
    "GuestPageSize": 0x028,  # legacy only
    "QueueSel": 0x030,
    "QueueNumMax": 0x034,
    "QueueNum": 0x038,
    "QueueAlign": 0x03C,  # legacy only
    "QueuePFN": 0x040,  # legacy only
    "QueueReady": 0x044,
    "QueueNotify": 0x050,
    "InterruptStatus": 0x060,
    "InterruptACK": 0x064,
    "Status": 0x070,
    "QueueDescLow": 0x080,
    "QueueDescHigh": 0x084,
    "QueueDriverLow": 0x090,
    "QueueDriverHigh": 0x094,
    "QueueDeviceLow": 0x0A0,
    "QueueDeviceHigh": 0x0A4,
    "SHMSel": 0x0AC,
    "SHMLenLow": 0x0B0,
    "SHMLenHigh": 0x0B4,
    "SHMBaseLow": 0x0B8,
    "SHMBaseHigh": 0x0BC,
    "QueueReset": 0x0C0,
    "ConfigGeneration": 0x0FC,
    "Config": 0x100,
}

# Device status bits (basic facilities).
STATUS = {
    "ACKNOWLEDGE": 1,
    "DRIVER": 2,
    "DRIVER_OK": 4,
    "FEATURES_OK": 8,
    "DEVICE_NEEDS_RESET": 64,
    "FAILED": 128,
}

# PCI configuration space (type 0 header) offsets used by the probe.
PCI_CFG = {
    "VendorID": 0x00,
    "DeviceID": 0x02,
    "Command": 0x04,
    "Status": 0x06,
    "RevisionID": 0x08,
    "SubsystemVendorID": 0x2C,
    "SubsystemID": 0x2E,
    "CapabilitiesPointer": 0x34,
}

# virtio PCI capability cfg_type values.
PCI_CAP_TYPES = {
    1: "common",
    2: "notify",
    3: "isr",
    4: "device",
    5: "pci_cfg",
    8: "shared_memory",
    9: "vendor",
}

PCI_MODERN_DEVICE_ID_BASE = 0x1040
PCI_TRANSITIONAL_IDS = range(0x1000, 0x1040)

# Transitional (legacy-capable) PCI device IDs, by virtio device ID.
PCI_TRANSITIONAL_DEVICE_IDS = {
    1: 0x1000,  # network
    2: 0x1001,  # block
    5: 0x1002,  # traditional memory balloon
    3: 0x1003,  # console
    8: 0x1004,  # SCSI host
    4: 0x1005,  # entropy source
    9: 0x1009,  # 9P transport
}
