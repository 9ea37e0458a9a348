"""Real requests for devices that need no outside peer, as guarded buffers.

Each device type says which queues the driver sets up, which features it asks for, and
which requests it can make.  A request is a list of buffers (device-readable ones with
known content, device-writable ones with a fill pattern) on one queue; the probe posts
them, and ``Request.observe`` tells what the device did with them.
"""

import struct

from .virtqueue import GuardedBuffer

SECTOR = 512


class Request:
    def __init__(self, name, queue, buffers, note="", expect=None):
        self.name = name
        self.queue = queue
        self.buffers = buffers
        self.note = note
        self.expect = expect  # what the writable buffers must start with, if known

    def segments(self):
        return [b.segment() for b in self.buffers]

    def writable_total(self):
        return sum(b.length for b in self.buffers if b.writable)

    def observe(self):
        """Buffers after the device used them, and the written extent over the chain.

        ``written`` counts the device-writable bytes up to the last one changed, over
        the writable buffers in chain order (the device fills them in that order).
        """
        seen = [b.observe() for b in self.buffers]
        written, offset = 0, 0
        for b, o in zip(self.buffers, seen, strict=True):
            if b.writable:
                if o["extent"]:
                    written = offset + o["extent"]
                offset += b.length
        readable_untouched = all(o["changed"] == 0 for b, o in zip(self.buffers, seen, strict=True)
                                 if not b.writable)
        guards = all(o["guard_before_intact"] and o["guard_after_intact"] for o in seen)
        out = {"name": self.name, "queue": self.queue, "note": self.note, "buffers": seen,
               "writable_total": self.writable_total(), "written": written,
               "readable_untouched": readable_untouched, "guards_intact": guards}
        if self.expect is not None:
            got = b"".join(b.content() for b in self.buffers if b.writable)
            out["data_matches"] = got[:len(self.expect)] == self.expect
        return out

    def status_byte(self):
        """The last byte of the last writable buffer (block's status)."""
        last = [b for b in self.buffers if b.writable][-1]
        return last.content()[-1]


def _ro(mem, data):
    return GuardedBuffer(mem, len(data), False, data)


def _rw(mem, length):
    return GuardedBuffer(mem, length, True)


# -- entropy (device type 4): device-writable buffers only
def entropy_requests(mem, dev, variety=True):
    reqs = [Request("entropy-64", 0, [_rw(mem, 64)])]
    if variety:
        reqs.append(Request("entropy-chain-3", 0, [_rw(mem, 16), _rw(mem, 24), _rw(mem, 8)],
                            "three writable descriptors"))
    return reqs


# -- block (device type 2)
BLK_T_IN, BLK_T_OUT, BLK_T_FLUSH, BLK_T_GET_ID = 0, 1, 4, 8
BLK_T_DISCARD, BLK_T_WRITE_ZEROES = 11, 13
BLK_F_FLUSH, BLK_F_DISCARD, BLK_F_WRITE_ZEROES = 1 << 9, 1 << 13, 1 << 14
SCRATCH_SECTOR = 2048  # 1 MiB into the scratch image


def _blk_header(kind, sector=0):
    return struct.pack("<IIQ", kind, 0, sector)


def _sector_data(seed):
    return bytes((seed * 13 + i * 5 + 1) & 0x7F for i in range(SECTOR))


def block_requests(mem, dev, variety=True):
    data = _sector_data(3)
    reqs = [
        Request("blk-write", 0, [_ro(mem, _blk_header(BLK_T_OUT, SCRATCH_SECTOR)),
                                 _ro(mem, data), _rw(mem, 1)]),
        Request("blk-read", 0, [_ro(mem, _blk_header(BLK_T_IN, SCRATCH_SECTOR)),
                                _rw(mem, SECTOR), _rw(mem, 1)], "reads back blk-write",
                expect=data),
    ]
    if not variety:
        return reqs[1:]
    reqs.append(Request("blk-read-split", 0, [_ro(mem, _blk_header(BLK_T_IN, SCRATCH_SECTOR)),
                                              _rw(mem, 100), _rw(mem, SECTOR - 100),
                                              _rw(mem, 1)],
                        "one sector read into two descriptors", expect=data))
    reqs.append(Request("blk-get-id", 0, [_ro(mem, _blk_header(BLK_T_GET_ID)), _rw(mem, 20),
                                          _rw(mem, 1)]))
    if dev.accepted & BLK_F_FLUSH:
        reqs.append(Request("blk-flush", 0, [_ro(mem, _blk_header(BLK_T_FLUSH)), _rw(mem, 1)]))
    segment = struct.pack("<QII", SCRATCH_SECTOR + 8, 8, 0)
    if dev.accepted & BLK_F_WRITE_ZEROES:
        reqs.append(Request("blk-write-zeroes", 0, [_ro(mem, _blk_header(BLK_T_WRITE_ZEROES)),
                                                    _ro(mem, segment), _rw(mem, 1)]))
    if dev.accepted & BLK_F_DISCARD:
        reqs.append(Request("blk-discard", 0, [_ro(mem, _blk_header(BLK_T_DISCARD)),
                                               _ro(mem, segment), _rw(mem, 1)]))
    return reqs


# -- console (device type 3): transmit on port 0 (queue 1), no MULTIPORT
def console_requests(mem, dev, variety=True):
    return [Request("console-tx", 1, [_ro(mem, b"virtio-conformance\n")])]


# -- network (device type 1): transmit one broadcast frame on queue 1
NET_F_MAC, NET_F_STATUS, NET_F_MRG_RXBUF = 1 << 5, 1 << 16, 1 << 15


def net_requests(mem, dev, variety=True):
    modern = bool(dev.accepted & (1 << 32))
    hdr_len = 12 if modern or dev.accepted & NET_F_MRG_RXBUF else 10
    frame = (b"\xff" * 6 + bytes.fromhex("525400d07e01") + b"\x88\xb5"
             + b"virtio-conformance".ljust(46, b"\0"))
    reqs = [Request("net-tx", 1, [_ro(mem, bytes(hdr_len)), _ro(mem, frame)],
                    "header and frame in two descriptors")]
    return reqs


# -- traditional balloon (device type 5): inflate then deflate four probe pages
def balloon_requests(mem, dev, variety=True):
    pages = [mem.alloc(4096, 4096) >> 12 for _ in range(4)]
    pfns = struct.pack("<4I", *pages)
    return [Request("balloon-inflate", 0, [_ro(mem, pfns)]),
            Request("balloon-deflate", 1, [_ro(mem, pfns)])]


# -- SCSI host (device type 8): TEST UNIT READY and INQUIRY to target 0, LUN 0
def _scsi_sizes(dev):
    sense = dev.t.config_read(20, 4) or 96
    cdb = dev.t.config_read(24, 4) or 32
    return min(sense, 256), min(cdb, 256)


def scsi_requests(mem, dev, variety=True):
    sense, cdb_size = _scsi_sizes(dev)
    lun = bytes([1, 0, 0x40, 0, 0, 0, 0, 0])

    def req(tag, cdb):
        return lun + struct.pack("<QBBB", tag, 0, 0, 0) + bytes(cdb).ljust(cdb_size, b"\0")

    resp = 12 + sense
    reqs = [Request("scsi-test-unit-ready", 2, [_ro(mem, req(1, [0] * 6)), _rw(mem, resp)])]
    if variety:
        reqs.append(Request("scsi-inquiry", 2, [_ro(mem, req(2, [0x12, 0, 0, 0, 96, 0])),
                                                _rw(mem, resp), _rw(mem, 96)]))
    return reqs


DEVICES = {
    # virtio id: (name, queues to set up, features wanted, request builder)
    1: ("network", (0, 1), NET_F_MAC | NET_F_STATUS, net_requests),
    2: ("block", (0,), BLK_F_FLUSH | BLK_F_DISCARD | BLK_F_WRITE_ZEROES, block_requests),
    3: ("console", (0, 1), 0, console_requests),
    4: ("entropy", (0,), 0, entropy_requests),
    5: ("balloon", (0, 1), 0, balloon_requests),
    8: ("scsi", (0, 1, 2), 0, scsi_requests),
}


def supported(virtio_id):
    return virtio_id in DEVICES
