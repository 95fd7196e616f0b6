#!/usr/bin/env python3
"""Splits udhcpc-session.pcap (from capture-udhcpc.sh) into one file per
client message kind: udhcpc-discover.pcap (first DISCOVER),
udhcpc-request.pcap (REQUEST while selecting, then while renewing) and
udhcpc-release.pcap. Server (udhcpd) frames are left out."""
import struct, sys

src = sys.argv[1] if len(sys.argv) > 1 else "udhcpc-session.pcap"
data = open(src, "rb").read()
header, off, frames = data[:24], 24, []
while off < len(data):
    _, _, incl, _ = struct.unpack("<IIII", data[off:off + 16])
    frames.append(data[off:off + 16 + incl])
    off += 16 + incl

def msg_type(frame):
    eth = frame[16:]
    ihl = (eth[14] & 0x0F) * 4
    udp = eth[14 + ihl:]
    if struct.unpack("!H", udp[2:4])[0] != 67:
        return None
    dhcp, o = udp[8:], 240
    while o < len(dhcp) and dhcp[o] != 255:
        if dhcp[o] == 0:
            o += 1
            continue
        if dhcp[o] == 53:
            return dhcp[o + 2]
        o += 2 + dhcp[o + 1]
    return None

out = {"udhcpc-discover.pcap": [], "udhcpc-request.pcap": [], "udhcpc-release.pcap": []}
for f in frames:
    t = msg_type(f)
    if t == 1 and not out["udhcpc-discover.pcap"]:
        out["udhcpc-discover.pcap"].append(f)
    elif t == 3:
        out["udhcpc-request.pcap"].append(f)
    elif t == 7:
        out["udhcpc-release.pcap"].append(f)
for name, fs in out.items():
    with open(name, "wb") as w:
        w.write(header + b"".join(fs))
    print(name, len(fs), "frames")
