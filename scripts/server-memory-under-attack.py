#!/usr/bin/env python3
"""The server's resident memory under two attacks, for the hardening figures.

    python3 scripts/server-memory-under-attack.py HOST PORT PID bodies|idle

`bodies`: 20 connections each announce an 80 MiB RPC body without any key and stream up to
60 MiB of it; `idle`: 1,000 connections opened and left idle. Prints the server's VmRSS (from
/proc/PID/status) before and during. Loopback only; bounded in count and time.
"""
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return -1


def bodies(host, port, pid):
    head = (
        "POST /rest/v1/rpc/upsert_project_file HTTP/1.1\r\nhost: x\r\n"
        f"content-type: application/json\r\ncontent-length: {80 * 1024 * 1024}\r\n\r\n"
    ).encode()
    conns = []
    for _ in range(20):
        conn = socket.create_connection((host, port), timeout=5)
        conn.sendall(head)
        conns.append(conn)
    chunk, sent = b"{" * (1024 * 1024), 0
    for _ in range(60):
        for conn in conns:
            try:
                conn.send(chunk)
                sent += 1
            except OSError:
                pass  # the server closed it
    time.sleep(1)
    print(f"sent {sent} MiB of keyless bodies; server RSS {rss_kib(pid)} KiB")


def idle(host, port, pid):
    conns = [socket.create_connection((host, port), timeout=5) for _ in range(1000)]
    time.sleep(1)
    print(f"{len(conns)} idle connections; server RSS {rss_kib(pid)} KiB")


def main():
    host, port, pid, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if not host.startswith("127."):
        sys.exit("loopback only")
    print(f"server RSS before: {rss_kib(pid)} KiB")
    {"bodies": bodies, "idle": idle}[mode](host, port, pid)


if __name__ == "__main__":
    main()
