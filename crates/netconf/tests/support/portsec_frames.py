#!/usr/bin/env python3
"""Writes frames into a tap as its guest would and says which of them the bridge received.

usage: portsec_frames.py TAP BRIDGE OWN_MAC OTHER_MAC
Prints one line per case and frame (plain, arp, dhcp, ip): "<case> <frame> passed|dropped".
Cases: own (every field the tap's MAC, addresses 10.9.9.9), spoofed-source (another source MAC),
spoofed-arp (own source, another ARP sender), spoofed-dhcp (own source, another DHCP client
address), spoofed-ip (own MACs, ARP and IP from 10.9.9.8)."""
import fcntl, os, socket, struct, sys, time

tap, br, own, other = sys.argv[1:5]
TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454CA, 0x0002, 0x1000
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", tap.encode(), IFF_TAP | IFF_NO_PI))
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
cap.bind((br, 0))
cap.settimeout(0.2)


def mac(text):
    return bytes.fromhex(text.replace(":", ""))


def checksum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF


def ipv4(src_ip, payload):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 17, 0, socket.inet_aton(src_ip), b"\xff" * 4)
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + payload


def frames(src, sha, chaddr, spa, tag):
    bcast = b"\xff" * 6
    plain = bcast + mac(src) + b"\x88\xb5" + b"VINE-PORTSEC-" + tag + bytes(40)
    arp = bcast + mac(src) + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac(sha) \
        + socket.inet_aton(spa) + bcast + socket.inet_aton("10.9.9.1") + tag.ljust(18, b"\0")
    bootp = struct.pack("!BBBBIHH", 1, 1, 6, 0, 0x56494E45, 0, 0x8000) + bytes(16) + mac(chaddr) \
        + bytes(10) + bytes(192) + b"\x63\x82\x53\x63\x35\x01\x01\xff" + tag
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4), b"\xff" * 4)
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    dhcp = bcast + mac(src) + b"\x08\x00" + hdr + udp
    ip = bcast + mac(src) + b"\x08\x00" + ipv4(spa, struct.pack("!HHHH", 9, 9, 8 + len(tag), 0) + tag)
    return {"plain": plain, "arp": arp, "dhcp": dhcp, "ip": ip}


cases = {
    "own": (own, own, own, "10.9.9.9"),
    "spoofed-source": (other, own, own, "10.9.9.9"),
    "spoofed-arp": (own, other, own, "10.9.9.9"),
    "spoofed-dhcp": (own, own, other, "10.9.9.9"),
    "spoofed-ip": (own, own, own, "10.9.9.8"),
}
for case, (src, sha, chaddr, spa) in cases.items():
    for kind, frame in frames(src, sha, chaddr, spa, case.encode()).items():
        while True:  # drain
            try:
                cap.recv(65536)
            except socket.timeout:
                break
        os.write(fd, frame)
        seen = False
        end = time.monotonic() + 0.5
        while time.monotonic() < end and not seen:
            try:
                got = cap.recv(65536)
            except socket.timeout:
                continue
            seen = got[: len(frame)] == frame
        print(f"{case} {kind} {'passed' if seen else 'dropped'}", flush=True)
