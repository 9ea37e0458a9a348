"""The driver's side of a virtqueue: split and packed rings in probe-owned memory.

Rings and buffers live in ``DmaMemory`` (or anything with its ``alloc/read/write/
load/store`` methods, such as the fake memory of the fast tests).  Nothing here touches
a register: the device layer (device.py) tells the transport where the rings are and
when to notify.  Every structure is little-endian (the legacy interface uses the
guest's byte order, which is little-endian on the x86 guests we run).

Split rings always use the legacy layout (descriptor table, then the available ring,
then the used ring on the next 4 KiB boundary, all in one block): it is also a legal
modern layout, so one ring serves both interfaces.
"""

import time

from .regs import VRING

NEXT = VRING["DESC_F_NEXT"]
WRITE = VRING["DESC_F_WRITE"]
INDIRECT = VRING["DESC_F_INDIRECT"]
P_AVAIL = VRING["PACKED_DESC_F_AVAIL"]
P_USED = VRING["PACKED_DESC_F_USED"]
DESC = VRING["DESC_SIZE"]
GUARD = 64  # canary bytes on each side of every buffer


def _align(value, to):
    return (value + to - 1) // to * to


def _guard_pattern(length, seed):
    return bytes(((seed * 131 + i * 29) ^ 0xC3) & 0xFF for i in range(length))


def _fill_pattern(length, seed):
    # Never 0 and different from the guard, so a device writing zeros shows up.
    return bytes(0x80 | ((seed * 17 + i * 7) & 0x7F) for i in range(length))


class GuardedBuffer:
    """A buffer with canaries around it: shows what a device wrote, and where.

    Device-readable buffers hold ``data``; device-writable ones a fill pattern, so the
    bytes a device wrote are the ones that no longer match it.
    """

    _seed = 0

    def __init__(self, mem, length, writable, data=None):
        GuardedBuffer._seed += 1
        self.seed = GuardedBuffer._seed
        self.mem = mem
        self.length = length
        self.writable = writable
        self.base = mem.alloc(length + 2 * GUARD, 64)
        self.addr = self.base + GUARD
        if data is not None:
            data = bytes(data)[:length].ljust(length, b"\0")
        self.initial = data if data is not None else _fill_pattern(length, self.seed)
        self.guard = _guard_pattern(GUARD, self.seed)
        mem.write(self.base, self.guard)
        mem.write(self.addr, self.initial)
        mem.write(self.addr + length, self.guard)

    def segment(self):
        return (self.addr, self.length, self.writable)

    def content(self):
        return self.mem.read(self.addr, self.length)

    def observe(self):
        """What happened to the buffer: bytes changed, how far, canaries intact."""
        now = self.content()
        changed = [i for i in range(self.length) if now[i] != self.initial[i]]
        before = self.mem.read(self.base, GUARD)
        after = self.mem.read(self.addr + self.length, GUARD)
        return {
            "addr": self.addr, "length": self.length, "writable": self.writable,
            "changed": len(changed),
            "extent": (changed[-1] + 1) if changed else 0,  # last written byte + 1
            "guard_before_intact": before == self.guard,
            "guard_after_intact": after == self.guard,
        }


class SplitQueue:
    """A split virtqueue of any legal size (a power of 2 up to 32768)."""

    kind = "split"

    def __init__(self, mem, index, size, event_idx=False):
        if size < 1 or size > 32768 or size & (size - 1):
            raise ValueError(f"split queue size {size} is not a power of 2 in 1..32768")
        self.mem, self.index, self.size, self.event_idx = mem, index, size, event_idx
        avail_bytes = 6 + 2 * size
        self.used_offset = _align(DESC * size + avail_bytes, VRING["LEGACY_ALIGN"])
        used_bytes = 6 + 8 * size
        self.total = self.used_offset + _align(used_bytes, VRING["LEGACY_ALIGN"])
        self.desc = mem.alloc(self.total, VRING["LEGACY_ALIGN"])
        self.avail = self.desc + DESC * size
        self.used = self.desc + self.used_offset
        self.free = list(range(size))
        self.chains = {}  # head -> descriptor indices of its chain
        self.avail_idx = 0  # the driver's next available index (free-running u16)
        self.last_used = 0  # how far the driver has read the used ring
        self.indirect_tables = {}  # head -> (address, entries, ordinary descriptors before it)

    def addresses(self):
        return self.desc, self.avail, self.used

    # -- descriptors
    def write_desc(self, i, addr, length, flags, nxt=0):
        base = self.desc + DESC * i
        self.mem.store(base, addr, 8)
        self.mem.store(base + 8, length, 4)
        self.mem.store(base + 12, flags, 2)
        self.mem.store(base + 14, nxt, 2)

    def read_desc(self, i, table=None):
        base = (table if table is not None else self.desc) + DESC * i
        return (self.mem.load(base, 8), self.mem.load(base + 8, 4),
                self.mem.load(base + 12, 2), self.mem.load(base + 14, 2))

    def add(self, segments, publish=True):
        """Chain ``segments`` [(addr, length, writable)]; returns the head index."""
        if len(segments) > len(self.free):
            raise RuntimeError("split queue full")
        chain = [self.free.pop(0) for _ in segments]
        for n, (i, (addr, length, writable)) in enumerate(zip(chain, segments, strict=True)):
            last = n == len(chain) - 1
            flags = (WRITE if writable else 0) | (0 if last else NEXT)
            self.write_desc(i, addr, length, flags, 0 if last else chain[n + 1])
        self.chains[chain[0]] = chain
        self._offer(chain[0], publish)
        return chain[0]

    def add_indirect(self, segments, publish=True, direct=0, write_flag=True):
        """The first ``direct`` segments as ordinary descriptors, then one descriptor
        pointing at a table holding the rest.

        ``write_flag`` also sets WRITE on the indirect descriptor itself: the device must
        disregard it there.
        """
        if len(self.free) < direct + 1:
            raise RuntimeError("split queue full")
        inner = segments[direct:]
        table = self.mem.alloc(DESC * len(inner), 16)
        for n, (addr, length, writable) in enumerate(inner):
            last = n == len(segments) - 1
            flags = (WRITE if writable else 0) | (0 if last else NEXT)
            base = table + DESC * n
            self.mem.store(base, addr, 8)
            self.mem.store(base + 8, length, 4)
            self.mem.store(base + 12, flags, 2)
            self.mem.store(base + 14, 0 if last else n + 1, 2)
        chain = [self.free.pop(0) for _ in range(direct + 1)]
        for n, (addr, length, writable) in enumerate(segments[:direct]):
            self.write_desc(chain[n], addr, length, (WRITE if writable else 0) | NEXT,
                            chain[n + 1])
        self.write_desc(chain[-1], table, DESC * len(inner),
                        INDIRECT | (WRITE if write_flag else 0))
        self.chains[chain[0]] = chain
        self.indirect_tables[chain[0]] = (table, len(inner), direct)
        self._offer(chain[0], publish)
        return chain[0]

    def add_raw(self, descriptors, publish=True):
        """Descriptors written as given [(addr, length, flags, next)] from a free head;
        for malformed chains.  Returns the head."""
        chain = [self.free.pop(0) for _ in descriptors]
        for i, (addr, length, flags, nxt) in zip(chain, descriptors, strict=True):
            self.write_desc(i, addr, length, flags, nxt)
        self.chains[chain[0]] = chain
        self._offer(chain[0], publish)
        return chain[0]

    def _offer(self, head, publish):
        self.mem.store(self.avail + 4 + 2 * (self.avail_idx % self.size), head, 2)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        if publish:
            self.publish()

    def publish(self):
        """Make every offered buffer visible: the available index is written last."""
        self.mem.store(self.avail + 2, self.avail_idx, 2)

    # -- suppression fields
    def set_avail_flags(self, flags):
        self.mem.store(self.avail, flags, 2)

    def set_used_event(self, value):
        self.mem.store(self.avail + 4 + 2 * self.size, value & 0xFFFF, 2)

    def used_flags(self):
        return self.mem.load(self.used, 2)

    def avail_event(self):
        return self.mem.load(self.used + 4 + 8 * self.size, 2)

    # -- used ring
    def used_idx(self):
        return self.mem.load(self.used + 2, 2)

    def used_elem(self, position):
        base = self.used + 4 + 8 * (position % self.size)
        return self.mem.load(base, 4), self.mem.load(base + 4, 4)

    def pending(self):
        return (self.used_idx() - self.last_used) & 0xFFFF

    def reap(self):
        """New used elements: [{"pos", "id", "len"}], freeing their descriptors."""
        out = []
        idx = self.used_idx()
        while self.last_used != idx:
            ident, length = self.used_elem(self.last_used)
            out.append({"pos": self.last_used, "id": ident, "len": length})
            for i in self.chains.pop(ident, []):
                self.free.append(i)
            self.indirect_tables.pop(ident, None)
            self.last_used = (self.last_used + 1) & 0xFFFF
        return out

    def wait_used(self, count, seconds):
        """Wait (bounded) until ``count`` entries beyond ``last_used`` are used."""
        deadline = time.monotonic() + seconds
        while self.pending() < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def snapshot(self):
        """Descriptor table and available ring as bytes (the device must not write them)."""
        return self.mem.read(self.desc, self.used_offset)

    def state(self):
        return {"kind": self.kind, "index": self.index, "size": self.size,
                "desc": self.desc, "avail": self.avail, "used": self.used,
                "avail_idx": self.avail_idx, "used_idx": self.used_idx(),
                "used_flags": self.used_flags(), "avail_event": self.avail_event()}


class PackedQueue:
    """A packed virtqueue: descriptors in one ring with wrap counters."""

    kind = "packed"

    def __init__(self, mem, index, size):
        if size < 1 or size > 32768:
            raise ValueError(f"packed queue size {size} is outside 1..32768")
        self.mem, self.index, self.size = mem, index, size
        self.desc = mem.alloc(DESC * size, 4096)
        self.driver_event = mem.alloc(4, 16)
        self.device_event = mem.alloc(4, 16)
        self.next_avail, self.avail_wrap = 0, 1
        self.next_used, self.used_wrap = 0, 1
        self.free_ids = list(range(size))
        self.chains = {}  # buffer id -> number of ring slots its chain took
        self.free_slots = size

    def addresses(self):
        return self.desc, self.driver_event, self.device_event

    def _flags(self, base_flags):
        # AVAIL equal to the driver's wrap counter, USED its inverse: "available".
        return (base_flags | (P_AVAIL if self.avail_wrap else 0)
                | (0 if self.avail_wrap else P_USED))

    def add(self, segments, publish=True, decoy_ids=False, indirect=False):
        """Offer ``segments`` as one buffer; returns its buffer id.

        The id is written in the chain's last descriptor (where the device must take it
        from); with ``decoy_ids`` the other descriptors carry a different id, so a device
        reading the wrong one shows up.
        """
        buffer_id = self.free_ids.pop(0)
        if indirect:
            table = self.mem.alloc(DESC * len(segments), 16)
            for n, (addr, length, writable) in enumerate(segments):
                base = table + DESC * n
                self.mem.store(base, addr, 8)
                self.mem.store(base + 8, length, 4)
                self.mem.store(base + 12, buffer_id, 2)
                self.mem.store(base + 14, WRITE if writable else 0, 2)
            ring = [(table, DESC * len(segments), INDIRECT)]
        else:
            ring = [(addr, length, (WRITE if w else 0)) for addr, length, w in segments]
        if len(ring) > self.free_slots:
            self.free_ids.insert(0, buffer_id)
            raise RuntimeError("packed queue full")
        slots = []
        for n, (addr, length, flags) in enumerate(ring):
            last = n == len(ring) - 1
            ident = buffer_id if last or not decoy_ids else (buffer_id + 0x5A5) & 0xFFFF
            slots.append((self.next_avail, addr, length, ident,
                          self._flags(flags | (0 if last else NEXT))))
            self.next_avail += 1
            if self.next_avail == self.size:
                self.next_avail, self.avail_wrap = 0, self.avail_wrap ^ 1
        self.free_slots -= len(ring)
        self.chains[buffer_id] = len(ring)
        # The head's flags go last: writing them is what makes the chain available.
        for i, (slot, addr, length, ident, flags) in enumerate(slots):
            base = self.desc + DESC * slot
            self.mem.store(base, addr, 8)
            self.mem.store(base + 8, length, 4)
            self.mem.store(base + 12, ident, 2)
            if i:
                self.mem.store(base + 14, flags, 2)
        self._head = (slots[0][0], slots[0][4])
        if publish:
            self.publish()
        return buffer_id

    def publish(self):
        slot, flags = self._head
        self.mem.store(self.desc + DESC * slot + 14, flags, 2)

    def read_desc(self, slot):
        base = self.desc + DESC * slot
        return (self.mem.load(base, 8), self.mem.load(base + 8, 4),
                self.mem.load(base + 12, 2), self.mem.load(base + 14, 2))

    def _is_used(self, flags):
        avail = 1 if flags & P_AVAIL else 0
        used = 1 if flags & P_USED else 0
        return avail == used == self.used_wrap

    def pending(self):
        """How many used descriptors wait to be read (walking the ring from next_used)."""
        n, slot, wrap = 0, self.next_used, self.used_wrap
        for _ in range(self.size):
            flags = self.mem.load(self.desc + DESC * slot + 14, 2)
            if not ((1 if flags & P_AVAIL else 0) == (1 if flags & P_USED else 0) == wrap):
                break
            ident = self.mem.load(self.desc + DESC * slot + 12, 2)
            step = self.chains.get(ident, 1)
            n += 1
            slot += step
            if slot >= self.size:
                slot, wrap = slot - self.size, wrap ^ 1
        return n

    def reap(self):
        """New used descriptors: [{"slot", "id", "len", "flags", "wrap"}]."""
        out = []
        for _ in range(self.size):
            _addr, length, ident, flags = self.read_desc(self.next_used)
            if not self._is_used(flags):
                break
            out.append({"slot": self.next_used, "id": ident, "len": length, "flags": flags,
                        "wrap": self.used_wrap})
            step = self.chains.pop(ident, 1)
            if ident not in self.free_ids and ident < self.size:
                self.free_ids.append(ident)
            self.free_slots += step
            self.next_used += step
            if self.next_used >= self.size:
                self.next_used -= self.size
                self.used_wrap ^= 1
        return out

    def wait_used(self, count, seconds):
        deadline = time.monotonic() + seconds
        while self.pending() < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def set_driver_event(self, flags, off_wrap=0):
        self.mem.store(self.driver_event, off_wrap, 2)
        self.mem.store(self.driver_event + 2, flags, 2)

    def device_event_state(self):
        return {"off_wrap": self.mem.load(self.device_event, 2),
                "flags": self.mem.load(self.device_event + 2, 2)}

    def state(self):
        return {"kind": self.kind, "index": self.index, "size": self.size,
                "desc": self.desc, "driver_event": self.driver_event,
                "device_event": self.device_event, "next_avail": self.next_avail,
                "avail_wrap": self.avail_wrap, "next_used": self.next_used,
                "used_wrap": self.used_wrap, **{"device_" + k: v for k, v in
                                                self.device_event_state().items()}}
