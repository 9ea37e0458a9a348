"""A fake memory and a fake entropy device behind the probe's ``Transport`` interface.

The device side of split and packed rings, written from the spec, so the probe's ring
layer and commands can be tested without a guest.  ``bugs`` switches on misbehaviour
(the probe must then report what it saw).
"""

from __future__ import annotations

from conformance.probe.regs import VRING
from conformance.probe.transport import Transport

NEXT, WRITE, INDIRECT = VRING["DESC_F_NEXT"], VRING["DESC_F_WRITE"], VRING["DESC_F_INDIRECT"]
P_AVAIL, P_USED = VRING["PACKED_DESC_F_AVAIL"], VRING["PACKED_DESC_F_USED"]
VERSION_1, INDIRECT_DESC, EVENT_IDX = 1 << 32, 1 << 28, 1 << 29
RING_PACKED = 1 << 34


class FakeMemory:
    def __init__(self, base=0x1E000000, size=4 << 20):
        self.base, self.size = base, size
        self.buf = bytearray(size)
        self._next = 0

    def alloc(self, length, align=4096):
        start = (self._next + align - 1) // align * align
        self._next = start + length
        self.buf[start:start + length] = bytes(length)
        return self.base + start

    def read(self, addr, length):
        off = addr - self.base
        return bytes(self.buf[off:off + length])

    def write(self, addr, data):
        off = addr - self.base
        self.buf[off:off + len(data)] = data

    def load(self, addr, width):
        return int.from_bytes(self.read(addr, width), "little")

    def store(self, addr, value, width):
        self.write(addr, value.to_bytes(width, "little"))


class FakeEntropy(Transport):
    """virtio-rng with one queue: fills writable buffers with 0x42."""

    def __init__(self, mem, legacy=False, features=VERSION_1 | INDIRECT_DESC | EVENT_IDX,
                 bugs=()):
        self.mem = mem
        self.legacy = legacy
        self.features = features & 0xFFFFFFFF if legacy else features
        self.bugs = set(bugs)
        self.trace = []
        self.status = 0
        self.driver_features = 0
        self.isr = 0
        self.q = None
        self.max = 128

    def reset(self):
        self.trace.append(("w", "status", 1, 0))
        self.status = 0
        self.q = None
        self.isr = 0
        return 0

    def get_status(self):
        return self.status

    def set_status(self, value):
        self.trace.append(("w", "status", 1, value))
        self.status = value

    def device_features(self):
        return self.features

    def set_driver_features(self, value):
        self.driver_features = value

    def queue_max(self, index):
        return self.max if index == 0 else 0

    def setup_queue(self, index, size, desc, driver, device):
        packed = bool(self.driver_features & RING_PACKED)
        self.q = {"size": size, "desc": desc, "driver": driver, "device": device,
                  "packed": packed, "last_avail": 0, "used_idx": 0, "wrap": 1}

    def enable_queue(self, index):
        pass

    def notify(self, index):
        self.trace.append(("w", "notify", 2, index))
        if self.q is None:
            return
        if not self.status & 4 and not self.legacy and "early" not in self.bugs:
            return
        (self._packed if self.q["packed"] else self._split)()

    def read_interrupt(self):
        isr, self.isr = self.isr, 0
        return bool(isr & 1), bool(isr & 2)

    def config_read(self, offset, width):
        return 0

    def config_write(self, offset, value, width):
        pass

    def config_generation(self):
        return 0

    # -- the device side of the rings
    def _segments(self, table, i, size):
        out = []
        for _ in range(size):
            base = table + 16 * i
            addr, length = self.mem.load(base, 8), self.mem.load(base + 8, 4)
            flags, nxt = self.mem.load(base + 12, 2), self.mem.load(base + 14, 2)
            if flags & INDIRECT:
                out += self._segments(addr, 0, length // 16)
            else:
                out.append((addr, length, bool(flags & WRITE)))
            if not flags & NEXT:
                break
            i = nxt
        return out

    def _fill(self, segments):
        written = 0
        for addr, length, writable in segments:
            if writable:
                n = length - 1 if "short" in self.bugs else length
                self.mem.write(addr, b"\x42" * n)
                written += length
            elif "write-readable" in self.bugs:
                self.mem.write(addr, b"\x00")
        return written

    def _split(self):
        q = self.q
        size, avail, used = q["size"], q["driver"], q["device"]
        event_idx = bool(self.driver_features & EVENT_IDX)
        while q["last_avail"] != self.mem.load(avail + 2, 2):
            head = self.mem.load(avail + 4 + 2 * (q["last_avail"] % size), 2)
            q["last_avail"] = (q["last_avail"] + 1) & 0xFFFF
            length = self._fill(self._segments(q["desc"], head, size))
            if "len-plus" in self.bugs:
                length += 4
            slot = used + 4 + 8 * (q["used_idx"] % size)
            self.mem.store(slot, head, 4)
            self.mem.store(slot + 4, length, 4)
            old = q["used_idx"]
            q["used_idx"] = (old + 1) & 0xFFFF
            self.mem.store(used + 2, q["used_idx"], 2)
            if "twice" in self.bugs:
                self.mem.store(used + 4 + 8 * (q["used_idx"] % size), head, 4)
                q["used_idx"] = (q["used_idx"] + 1) & 0xFFFF
                self.mem.store(used + 2, q["used_idx"], 2)
            if event_idx:
                want = self.mem.load(avail + 4 + 2 * size, 2)
                notify = ((q["used_idx"] - want - 1) & 0xFFFF) < ((q["used_idx"] - old) & 0xFFFF)
            else:
                notify = not self.mem.load(avail, 2) & 1
            if notify or "ignore-suppression" in self.bugs:
                self.isr |= 1

    def _packed(self):
        q = self.q
        size, desc = q["size"], q["desc"]
        while True:
            base = desc + 16 * q["last_avail"]
            flags = self.mem.load(base + 14, 2)
            avail, used = bool(flags & P_AVAIL), bool(flags & P_USED)
            if not (avail == bool(q["wrap"]) and used != bool(q["wrap"])):
                return
            start, n, segs = q["last_avail"], 0, []
            ident = 0
            while True:
                b = desc + 16 * ((start + n) % size)
                addr, length = self.mem.load(b, 8), self.mem.load(b + 8, 4)
                ident, f = self.mem.load(b + 12, 2), self.mem.load(b + 14, 2)
                segs.append((addr, length, bool(f & WRITE)))
                n += 1
                if not f & NEXT:
                    break
            if "first-id" in self.bugs:
                ident = self.mem.load(desc + 16 * start + 12, 2)
            length = self._fill(segs)
            wrap = q["wrap"]
            self.mem.store(base + 8, length, 4)
            self.mem.store(base + 12, ident, 2)
            w = (P_AVAIL | P_USED) if wrap else 0
            self.mem.store(base + 14, w, 2)
            q["last_avail"] += n
            if q["last_avail"] >= size:
                q["last_avail"] -= size
                q["wrap"] ^= 1
            self.isr |= 1

