"""Guest images: a kernel and an initramfs built from Debian packages, cached by content.

Other rooms call :func:`build_image` (cheap when the image is cached) and boot
``image.kernel`` with ``image.initrd``.  The guest's /init (``guest-images/init``) speaks
a small protocol on the serial console and reads its settings from the kernel command
line; the names are collected here so the machine room does not spell them itself.
"""

from conformance.images.builder import (
    GuestImage,
    build_image,
    image_digest,
    load_cached,
)

# Lines /init prints on the serial console (/dev/ttyS0), each on a line of its own.
MARKER_INIT = "VC-INIT"        # /init started (the kernel booted)
MARKER_READY = "VC-READY"      # control NIC configured, sshd listening
MARKER_FAIL = "VC-FAIL"        # followed by a reason; a root shell stays on the console
MARKER_HOSTKEY = "VC-HOSTKEY"  # followed by the SSH host key ("ssh-ed25519 AAAA..."), before READY

# Always on the command line: the serial console, and /dev/mem access to regions a driver
# has claimed (the probe maps device registers).
CMDLINE_BASE = "console=ttyS0 iomem=relaxed"

# Parameters /init reads (all values without spaces):
PARAM_AUTHKEY = "vc.authkey"   # <type>:<base64>, e.g. ssh-ed25519:AAAA...; may repeat
PARAM_CTLMAC = "vc.ctlmac"     # MAC of the control NIC
PARAM_CTLMOD = "vc.ctlmod"     # its driver module: e1000e (q35) or virtio_net (microvm)
PARAM_CTLMMIO = "vc.ctlmmio"   # microvm: MMIO base of the control NIC's virtio-mmio transport
PARAM_CTLPCI = "vc.ctlpci"     # q35 with a virtio-net-pci control NIC: its PCI address
PARAM_IP = "vc.ip"             # address/prefix, default 10.0.2.15/24
PARAM_GW = "vc.gw"             # default gateway, default 10.0.2.2

__all__ = [
    "GuestImage", "build_image", "image_digest", "load_cached",
    "MARKER_INIT", "MARKER_READY", "MARKER_FAIL", "MARKER_HOSTKEY", "CMDLINE_BASE",
    "PARAM_AUTHKEY", "PARAM_CTLMAC", "PARAM_CTLMOD", "PARAM_CTLMMIO", "PARAM_CTLPCI", "PARAM_IP", "PARAM_GW",
]
