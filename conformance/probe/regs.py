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

# Reserved (transport/ring) feature bits, by bit number (basic facilities: feature bits).
FEATURE_BITS = {
    "VIRTIO_F_NOTIFY_ON_EMPTY": 24,  # legacy only
    "VIRTIO_F_ANY_LAYOUT": 27,  # legacy only
    "VIRTIO_F_INDIRECT_DESC": 28,
    "VIRTIO_F_EVENT_IDX": 29,
    "VIRTIO_F_VERSION_1": 32,
    "VIRTIO_F_ACCESS_PLATFORM": 33,
    "VIRTIO_F_RING_PACKED": 34,
    "VIRTIO_F_IN_ORDER": 35,
    "VIRTIO_F_ORDER_PLATFORM": 36,
    "VIRTIO_F_SR_IOV": 37,
    "VIRTIO_F_NOTIFICATION_DATA": 38,
    "VIRTIO_F_NOTIF_CONFIG_DATA": 39,
    "VIRTIO_F_RING_RESET": 40,
    "VIRTIO_F_ADMIN_VQ": 41,
}

# Virtqueue layouts (split and packed rings): descriptor flags and element sizes.
VRING = {
    "DESC_F_NEXT": 1,
    "DESC_F_WRITE": 2,
    "DESC_F_INDIRECT": 4,
    "PACKED_DESC_F_AVAIL": 1 << 7,
    "PACKED_DESC_F_USED": 1 << 15,
    "AVAIL_F_NO_INTERRUPT": 1,  # split: driver asks for no used-buffer notifications
    "USED_F_NO_NOTIFY": 1,  # split: device asks for no available-buffer notifications
    "EVENT_FLAGS_ENABLE": 0,  # packed event suppression structure flags
    "EVENT_FLAGS_DISABLE": 1,
    "EVENT_FLAGS_DESC": 2,
    "DESC_SIZE": 16,
    "LEGACY_ALIGN": 4096,  # legacy split layout: the used ring starts on this boundary
}

# ---- virtio over PCI (transport/pci): every offset the PCI probe and checks use.
# Type 0 header fields beyond PCI_CFG above, and bits of Command/Status.
PCI_HEADER = {
    "BAR0": 0x10,  # six 32-bit BAR registers from here
    "InterruptLine": 0x3C,
    "InterruptPin": 0x3D,
}
PCI_COMMAND_BITS = {"IO": 1 << 0, "MEMORY": 1 << 1, "BUS_MASTER": 1 << 2,
                    "INTX_DISABLE": 1 << 10}
PCI_STATUS_BITS = {"INTERRUPT": 1 << 3, "CAP_LIST": 1 << 4}
PCI_CAP_ID_VNDR = 0x09
PCI_CAP_ID_MSIX = 0x11
PCI_EXT_CAP_ID_VNDR = 0x000B  # PCIe vendor-specific extended capability (VSEC)
PCI_EXT_CAP_START = 0x100

# A virtio vendor capability: (offset in the capability, width).  Shared memory adds
# the high halves; notify adds the multiplier; pci_cfg adds the data window.
VIRTIO_PCI_CAP = {
    "cap_vndr": (0, 1),
    "cap_next": (1, 1),
    "cap_len": (2, 1),
    "cfg_type": (3, 1),
    "bar": (4, 1),
    "id": (5, 1),
    "offset": (8, 4),
    "length": (12, 4),
    "offset_hi": (16, 4),  # shared memory (cap64)
    "length_hi": (20, 4),
    "notify_off_multiplier": (16, 4),  # notify
    "pci_cfg_data": (16, 4),  # pci_cfg
    "vendor_id": (4, 2),  # vendor data
}
# Smallest cap_len each cfg_type needs for its fields (16 = the common header).
VIRTIO_PCI_CAP_MIN_LEN = {1: 16, 2: 20, 3: 16, 4: 16, 5: 20, 8: 24, 9: 8}
VIRTIO_PCI_CAP_TYPE = {name: t for t, name in PCI_CAP_TYPES.items()}
VIRTIO_PCI_CAP_LEGACY_MMR = 10  # proposal/pci-legacy-mmr, in a PCIe VSEC
VIRTIO_PCI_BAR_MAX = 5  # bar values above this are reserved

# Common configuration structure: name -> (offset, width).
PCI_COMMON = {
    "device_feature_select": (0x00, 4),
    "device_feature": (0x04, 4),
    "driver_feature_select": (0x08, 4),
    "driver_feature": (0x0C, 4),
    "config_msix_vector": (0x10, 2),
    "num_queues": (0x12, 2),
    "device_status": (0x14, 1),
    "config_generation": (0x15, 1),
    "queue_select": (0x16, 2),
    "queue_size": (0x18, 2),
    "queue_msix_vector": (0x1A, 2),
    "queue_enable": (0x1C, 2),
    "queue_notify_off": (0x1E, 2),
    "queue_desc": (0x20, 8),
    "queue_driver": (0x28, 8),
    "queue_device": (0x30, 8),
    "queue_notif_config_data": (0x38, 2),
    "queue_reset": (0x3A, 2),
    "admin_queue_index": (0x3C, 2),
    "admin_queue_num": (0x3E, 2),
}
PCI_COMMON_LEN_V1 = 0x38  # up to queue_device (virtio 1.0)
PCI_COMMON_LEN = 0x40  # every field through admin_queue_num
PCI_ISR_QUEUE = 0x1
PCI_ISR_CONFIG = 0x2
NO_VECTOR = 0xFFFF

# Legacy register block in I/O BAR0: name -> (offset, width).  With MSI-X enabled the
# two vector registers follow and device configuration starts at 24 instead of 20.
PCI_LEGACY = {
    "HostFeatures": (0x00, 4),
    "GuestFeatures": (0x04, 4),
    "QueueAddress": (0x08, 4),  # page frame number (4096-byte pages)
    "QueueSize": (0x0C, 2),
    "QueueSelect": (0x0E, 2),
    "QueueNotify": (0x10, 2),
    "DeviceStatus": (0x12, 1),
    "ISRStatus": (0x13, 1),
    "ConfigVector": (0x14, 2),  # MSI-X enabled only
    "QueueVector": (0x16, 2),  # MSI-X enabled only
}
PCI_LEGACY_CONFIG = 0x14
PCI_LEGACY_CONFIG_MSIX = 0x18
PCI_LEGACY_PFN_SHIFT = 12

# MSI-X capability and table.
MSIX = {
    "MessageControl": 2,  # bits 10:0 table size - 1, 14 function mask, 15 enable
    "Table": 4,  # bits 2:0 BIR, 31:3 offset
    "PBA": 8,
}
MSIX_CTRL_SIZE_MASK = 0x7FF
MSIX_CTRL_MASKALL = 1 << 14
MSIX_CTRL_ENABLE = 1 << 15
MSIX_ENTRY_SIZE = 16  # address low, address high, data, vector control (bit 0 mask)
MSIX_ENTRY_CTRL_MASKED = 1
