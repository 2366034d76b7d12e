#!/usr/bin/env python3
"""Where a chunk server's CPU goes during copies, from a `perf record`.

Usage: perf-breakdown.py PERF_DATA FREQ_HZ GIB_COPIED [LABEL [COMMS]]

COMMS (comma-separated thread names) keeps only those threads' samples.

Reads `perf script` of a `perf record -e cpu-clock -F FREQ_HZ -g` (fp or
dwarf) and puts every sample in one component, by its stack: kernel samples
by the system call (or fault, or interrupt) they were taken under, user
samples by the function they were taken in. Prints a Markdown table with
each component's share of the samples and its CPU seconds per GiB copied
(samples / FREQ_HZ / GIB_COPIED), then the callers of user-space memcpy.
"""

import collections
import re
import subprocess
import sys

# Kernel work by the functions on its stack (the syscall entry points are
# inlined into do_syscall_64 on this kernel, so they are not on it), checked
# in this order; a `write` to a socket and to a file differ only below.
KERNEL_RULES = [
    ("fsync (ext4, block layer)", ("ext4_sync_file", "file_write_and_wait_range",
                                   "vfs_fsync_range")),
    ("page faults: fresh socket-receive buffers", ("exc_page_fault&tcp_recvmsg",)),
    ("page faults: fresh file-read buffers", ("exc_page_fault&filemap_read",)),
    ("page faults: other", ("exc_page_fault", "asm_exc_page_fault")),
    ("socket send (TCP tx, loopback rx in softirq)", ("tcp_sendmsg", "__tcp_transmit_skb",
                                                      "tcp_write_xmit", "net_rx_action")),
    ("socket receive", ("tcp_recvmsg", "tcp_rcv_established", "tcp_cleanup_rbuf")),
    ("file read (page cache)", ("filemap_read", "ext4_file_read_iter")),
    ("file write (page cache)", ("ext4_buffered_write_iter", "generic_perform_write",
                                 "ext4_file_write_iter")),
    ("unlink (the bench's delete between copies)", ("do_unlinkat", "evict", "truncate_inode_pages")),
    ("allocation (kernel: mmap, munmap, madvise)", ("do_madvise", "__vm_munmap", "do_mmap",
                                                   "vms_complete_munmap_vmas", "unmap_region",
                                                   "__do_sys_brk", "do_vmi_munmap")),
    ("tokio scheduling/wakeups (kernel: futex, epoll, switches)", (
        "futex_wait", "futex_wake", "do_futex", "do_epoll_wait", "ep_poll", "schedule",
        "__schedule", "finish_task_switch", "try_to_wake_up", "do_sched_yield",
        "hrtimer_nanosleep", "finish_task_switch.isra.0", "syscall_exit_to_user_mode")),
    ("file metadata (open, rename, fallocate, stat)", ("do_sys_openat2", "do_renameat2",
                                                       "vfs_fallocate", "vfs_statx",
                                                       "__fput", "do_filp_open")),
    ("socket setup (connect, accept, close)", ("__sys_connect", "__sys_accept4",
                                              "inet_release", "tcp_close")),
]

USER_RULES = [
    ("CRC32C", re.compile(r"crc32c|crc_u64")),
    ("memcpy/memmove (user)", re.compile(r"memmove|memcpy")),
    ("memset (user)", re.compile(r"memset")),
    ("allocation (malloc/free)", re.compile(
        r"malloc|\bfree\b|cfree|_int_free|realloc|calloc|tcache|arena_|sysmalloc|"
        r"unlink_chunk|alloc::alloc|__rust_(de|re)?alloc|__rdl_")),
    ("HTTP/2 (h2)", re.compile(r"\bh2::|<h2::")),
    ("hyper", re.compile(r"hyper")),
    ("gRPC framing (tonic, prost, keel frames)", re.compile(r"tonic|prost|keel_proto::frames")),
    ("tokio scheduling/wakeups (user)", re.compile(
        r"tokio|mio::|parking_lot|std::sys::sync|std::thread|futex|pthread_|__lll_|"
        r"syscall$|crossbeam")),
    ("bytes", re.compile(r"\bbytes::")),
    ("keel (other)", re.compile(r"keel")),
]


def kernel_component(frames):
    """The component of a sample whose leaf is in the kernel."""
    names = {f for f, dso in frames if dso == "[kernel.kallsyms]"}
    for component, markers in KERNEL_RULES:
        for marker in markers:
            if all(part in names for part in marker.split("&")):
                return component
    return "kernel, other (interrupts, timers)"


def user_component(sym, dso):
    for name, rule in USER_RULES:
        if rule.search(sym):
            return name
    if "libc" in dso:
        return "libc, other"
    if sym == "[unknown]":
        return "unknown"
    return "other user code"


def samples(path, comms=None):
    """Yields each sample's frames, leaf first, as (symbol, dso)."""
    only = ["--comms", comms] if comms else []
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "ip,sym,dso", "--no-inline", *only],
        check=True, capture_output=True, text=True, errors="replace").stdout
    frame = re.compile(r"^\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")
    cur = []
    for line in out.splitlines():
        if not line.strip():
            if cur:
                yield cur
            cur = []
            continue
        m = frame.match(line)
        if m:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            cur.append((sym, m.group(2).strip()))
    if cur:
        yield cur


def short(sym):
    """A Rust symbol without its hash and generics, for the caller list."""
    sym = re.sub(r"::h[0-9a-f]{16}$", "", sym)
    return re.sub(r"<[^<>]*>", "<…>", sym)[:110]


def main():
    path, freq, gib = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    label = sys.argv[4] if len(sys.argv) > 4 else path
    comms = sys.argv[5] if len(sys.argv) > 5 else None
    counts = collections.Counter()
    memcpy_callers = collections.Counter()
    total = 0
    for frames in samples(path, comms):
        total += 1
        sym, dso = frames[0]
        if dso == "[kernel.kallsyms]":
            counts[kernel_component(frames)] += 1
            continue
        comp = user_component(sym, dso)
        counts[comp] += 1
        if comp.startswith("memcpy"):
            caller = next((s for s, d in frames[1:] if "libc" not in d and s != "[unknown]"),
                          "[unknown]")
            memcpy_callers[short(caller)] += 1
    if total == 0:
        sys.exit(f"{path}: no samples")
    print(f"#### {label}: {total} samples at {freq:.0f} Hz, {gib:.2f} GiB copied, "
          f"{total / freq / gib:.2f} CPU s per GiB\n")
    print("| component | samples | share | CPU s per GiB |")
    print("|---|---:|---:|---:|")
    for comp, n in counts.most_common():
        print(f"| {comp} | {n} | {100 * n / total:.1f} % | {n / freq / gib:.3f} |")
    if memcpy_callers:
        print("\nUser-space memcpy/memmove, by the first caller perf could unwind:\n")
        for caller, n in memcpy_callers.most_common(6):
            print(f"- {100 * n / total:.1f} %: `{caller}`")
    print()


if __name__ == "__main__":
    main()
