//go:build ignore

// Capture of plain TCP traffic at syscall tracepoints (no kprobes or fentry
// on our kernels). Arguments are stashed at sys_enter_* and the bytes copied
// at sys_exit_*, where the return value says how many really moved.

// The kernel and libbpf headers have implicit padding; only our own structs,
// which Go decodes, must have none.
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
#include "vmlinux.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "bpf_endian.h"
#pragma clang diagnostic pop

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define MSG_PEEK 2

// One event carries at most CHUNK_SIZE bytes; a syscall emits at most
// MAX_CHUNKS events and the rest is counted as truncated.
#define CHUNK_SIZE (16 * 1024)
#define MAX_CHUNKS 4
// Events are written without waking the reader (it polls with a short
// deadline) until this much is pending: one wakeup per event halves the
// throughput of a traced server.
#define WAKEUP_BYTES (256 * 1024)

enum kind { KIND_OPEN = 1, KIND_CLOSE = 2, KIND_DATA = 3 };
enum role { ROLE_UNKNOWN = 0, ROLE_SERVER = 1, ROLE_CLIENT = 2 };
enum dir { DIR_INGRESS = 0, DIR_EGRESS = 1 };
// The syscall an entry in the stash belongs to, so an exit never consumes
// the arguments of a different syscall (e.g. around attach time).
enum stash_op { STASH_READ = 1, STASH_WRITE = 2, STASH_CONNECT = 3 };

// Header of every ring buffer record, followed by len payload bytes.
// Addresses are IPv6 or v4-mapped IPv4, ports in host order.
struct event {
	__u64 ts;    // bpf_ktime_get_ns at the syscall
	__u64 start; // creation time of the connection, part of its id
	__u64 pos;   // stream position of the first byte (data)
	__u32 tgid;
	__u32 tid;
	__s32 fd;
	__u32 size; // stream bytes covered (data); more than len when truncated
	__u32 len;  // payload bytes that follow the header
	__u16 lport;
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[16];
	__u8 kind;
	__u8 role;
	__u8 dir;
	__u8 pad[5];
};

struct event_buf {
	struct event hdr;
	__u8 data[CHUNK_SIZE];
};

// Drop counters; every byte or event that does not reach userspace is
// counted in one of them.
struct counters {
	__u64 ringbuf_full;    // events lost because the ring buffer was full
	__u64 truncated_bytes; // bytes beyond MAX_CHUNKS * CHUNK_SIZE per syscall
	__u64 copy_failed;     // chunks whose bytes could not be read from the user buffer
	__u64 stash_failed;    // syscalls lost because their arguments could not be stashed
	__u64 conn_map_full;   // connections that could not be tracked
	__u64 conn_lost;       // syscalls whose connection was closed while they ran
};

struct conn_key {
	__u32 tgid;
	__s32 fd;
};

struct conn_info {
	__u64 start;
	__u64 pos[2]; // next stream position, by enum dir
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u8 role;
	__u8 ignored; // filtered out: its syscalls are not stashed
	__u8 pad[2];
};

struct args {
	__u64 buf;
	__s32 fd;
	__u32 op;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

// Keyed by pid_tgid: a thread is in one syscall at a time. LRU so entries of
// threads that died inside a syscall do not pile up.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct args);
} stash SEC(".maps");

// LRU because a process that exits closes its sockets without close(2);
// stale entries are evicted instead of filling the map.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, struct conn_info);
} conns SEC(".maps");

// Ports to capture (local or remote), used when filter_ports is set.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

// Events are built here: the stack is 512 bytes.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event_buf);
} bufs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} stats SEC(".maps");

// Set before load. The agent's own traffic (its stream to the collector)
// must never be captured.
volatile const __u32 self_tgid;
volatile const __u8 filter_ports;

#define COUNT(field, n)                                                  \
	do {                                                             \
		__u32 zero = 0;                                          \
		struct counters *c = bpf_map_lookup_elem(&stats, &zero); \
		if (c)                                                   \
			c->field += (n);                                 \
	} while (0)

// The TCP socket behind fd in the current process, or NULL for anything
// else (files, pipes, unix and UDP sockets).
static __always_inline struct sock *tcp_sock(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if ((unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (BPF_CORE_READ(sock, type) != SOCK_STREAM)
		return NULL;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return NULL;
	return sk;
}

static __always_inline void read_addrs(struct conn_info *ci, struct sock *sk)
{
	ci->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	ci->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET) {
		ci->laddr[10] = ci->laddr[11] = 0xff;
		ci->raddr[10] = ci->raddr[11] = 0xff;
		bpf_core_read(&ci->laddr[12], 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(&ci->raddr[12], 4, &sk->__sk_common.skc_daddr);
		return;
	}
	bpf_core_read(ci->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
	bpf_core_read(ci->raddr, 16, &sk->__sk_common.skc_v6_daddr);
}

static __always_inline struct conn_info *track(struct conn_key *key, struct sock *sk, __u8 role)
{
	struct conn_info ci = {};
	ci.start = bpf_ktime_get_ns();
	ci.role = role;
	read_addrs(&ci, sk);
	if (filter_ports && !bpf_map_lookup_elem(&ports, &ci.lport) &&
	    !bpf_map_lookup_elem(&ports, &ci.rport))
		ci.ignored = 1;
	if (bpf_map_update_elem(&conns, key, &ci, BPF_ANY)) {
		COUNT(conn_map_full, 1);
		return NULL;
	}
	return bpf_map_lookup_elem(&conns, key);
}

static __always_inline void output(void *data, __u64 size)
{
	__u64 flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES
			      ? BPF_RB_FORCE_WAKEUP
			      : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, data, size, flags))
		COUNT(ringbuf_full, 1);
}

static __always_inline struct event_buf *header(__u8 kind, struct conn_key *key, struct conn_info *ci)
{
	__u32 zero = 0;
	struct event_buf *b = bpf_map_lookup_elem(&bufs, &zero);
	if (!b)
		return NULL;
	struct event *e = &b->hdr;
	e->ts = bpf_ktime_get_ns();
	e->start = ci->start;
	e->pos = 0;
	e->tgid = key->tgid;
	e->tid = (__u32)bpf_get_current_pid_tgid();
	e->fd = key->fd;
	e->size = 0;
	e->len = 0;
	e->lport = ci->lport;
	e->rport = ci->rport;
	__builtin_memcpy(e->laddr, ci->laddr, sizeof(e->laddr));
	__builtin_memcpy(e->raddr, ci->raddr, sizeof(e->raddr));
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->kind = kind;
	e->role = ci->role;
	e->dir = 0;
	return b;
}

static __always_inline void emit_conn(__u8 kind, struct conn_key *key, struct conn_info *ci)
{
	struct event_buf *b = header(kind, key, ci);
	if (b)
		output(b, sizeof(b->hdr));
}

// Emits total bytes at ubuf as chunk events. The stream position advances
// by total even when bytes are dropped, so userspace sees the gap.
static __always_inline void emit_data(struct conn_key *key, struct conn_info *ci, __u8 dir,
				      __u64 ubuf, __u64 total)
{
	// Reserved atomically: threads may share a socket.
	__u64 pos = __sync_fetch_and_add(&ci->pos[dir & 1], total);
	struct event_buf *b = header(KIND_DATA, key, ci);
	if (!b)
		return;
	b->hdr.dir = dir;
	for (int i = 0; i < MAX_CHUNKS; i++) {
		__u64 off = (__u64)i * CHUNK_SIZE;
		if (off >= total)
			return;
		__u64 left = total - off;
		__u32 n = left > CHUNK_SIZE ? CHUNK_SIZE : left;
		// clang 14 drops the bound above; make the verifier see it again.
		asm volatile("" : "+r"(n));
		if (n > CHUNK_SIZE)
			return;
		b->hdr.pos = pos + off;
		b->hdr.size = n;
		if (i == MAX_CHUNKS - 1 && left > n) {
			// The last chunk covers the rest of the syscall's bytes.
			b->hdr.size = left;
			COUNT(truncated_bytes, left - n);
		}
		if (bpf_probe_read_user(b->data, n, (void *)(ubuf + off))) {
			COUNT(copy_failed, 1);
			b->hdr.len = 0;
			output(b, sizeof(b->hdr));
			continue;
		}
		b->hdr.len = n;
		output(b, sizeof(b->hdr) + n);
	}
}

// Stashes the arguments of a data syscall on a tracked (or newly found)
// TCP socket. Other fds are not stashed, so their exits cost one lookup.
static __always_inline int enter_data(__u32 op, int fd, __u64 buf)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct conn_key key = { .tgid = id >> 32, .fd = fd };
	if (key.tgid == self_tgid)
		return 0;
	struct conn_info *ci = bpf_map_lookup_elem(&conns, &key);
	if (!ci) {
		// Opened before the agent started, or not a TCP socket.
		struct sock *sk = tcp_sock(fd);
		if (!sk)
			return 0;
		ci = track(&key, sk, ROLE_UNKNOWN);
		if (!ci)
			return 0;
	}
	if (ci->ignored)
		return 0;
	struct args a = { .buf = buf, .fd = fd, .op = op };
	if (bpf_map_update_elem(&stash, &id, &a, BPF_ANY))
		COUNT(stash_failed, 1);
	return 0;
}

// Takes the stashed arguments of this thread's syscall, if they are op's.
static __always_inline int unstash(__u64 id, __u32 op, struct args *a)
{
	struct args *p = bpf_map_lookup_elem(&stash, &id);
	if (!p)
		return -1;
	*a = *p;
	bpf_map_delete_elem(&stash, &id);
	return a->op == op ? 0 : -1;
}

static __always_inline int exit_data(__u32 op, long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct args a;
	if (unstash(id, op, &a) || ret <= 0)
		return 0;
	struct conn_key key = { .tgid = id >> 32, .fd = a.fd };
	struct conn_info *ci = bpf_map_lookup_elem(&conns, &key);
	if (!ci) {
		COUNT(conn_lost, 1);
		return 0;
	}
	emit_data(&key, ci, op == STASH_WRITE ? DIR_EGRESS : DIR_INGRESS, a.buf, ret);
	return 0;
}

static __always_inline int accepted(long ret)
{
	struct conn_key key = { .tgid = bpf_get_current_pid_tgid() >> 32, .fd = ret };
	if (ret < 0 || key.tgid == self_tgid)
		return 0;
	struct sock *sk = tcp_sock(ret);
	if (!sk)
		return 0;
	struct conn_info *ci = track(&key, sk, ROLE_SERVER);
	if (ci && !ci->ignored)
		emit_conn(KIND_OPEN, &key, ci);
	return 0;
}

// accept needs no enter program: the new fd is the return value.
SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return accepted(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return accepted(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	int fd = ctx->args[0];
	if (id >> 32 == self_tgid || !tcp_sock(fd))
		return 0;
	struct args a = { .fd = fd, .op = STASH_CONNECT };
	if (bpf_map_update_elem(&stash, &id, &a, BPF_ANY))
		COUNT(stash_failed, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct args a;
	if (unstash(id, STASH_CONNECT, &a))
		return 0;
	// A non-blocking connect is under way with its addresses already set.
	if (ctx->ret != 0 && ctx->ret != -EINPROGRESS)
		return 0;
	struct sock *sk = tcp_sock(a.fd);
	if (!sk)
		return 0;
	struct conn_key key = { .tgid = id >> 32, .fd = a.fd };
	struct conn_info *ci = track(&key, sk, ROLE_CLIENT);
	if (ci && !ci->ignored)
		emit_conn(KIND_OPEN, &key, ci);
	return 0;
}

// Handled at enter: once close(2) has released the fd, another thread may get
// the same number from accept or connect before our exit program runs, and
// we would drop the new connection's entry. close releases the fd even when
// it returns an error, so the connection is over either way.
SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	struct conn_key key = { .tgid = bpf_get_current_pid_tgid() >> 32, .fd = ctx->args[0] };
	struct conn_info *ci = bpf_map_lookup_elem(&conns, &key);
	if (!ci)
		return 0;
	if (!ci->ignored)
		emit_conn(KIND_CLOSE, &key, ci);
	bpf_map_delete_elem(&conns, &key);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_read")
int enter_read(struct trace_event_raw_sys_enter *ctx)
{
	return enter_data(STASH_READ, ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_read")
int exit_read(struct trace_event_raw_sys_exit *ctx)
{
	return exit_data(STASH_READ, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
	// Peeked bytes are read again later; capture them then.
	if (ctx->args[3] & MSG_PEEK)
		return 0;
	return enter_data(STASH_READ, ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	return exit_data(STASH_READ, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_write")
int enter_write(struct trace_event_raw_sys_enter *ctx)
{
	return enter_data(STASH_WRITE, ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_write")
int exit_write(struct trace_event_raw_sys_exit *ctx)
{
	return exit_data(STASH_WRITE, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	return enter_data(STASH_WRITE, ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int exit_sendto(struct trace_event_raw_sys_exit *ctx)
{
	return exit_data(STASH_WRITE, ctx->ret);
}
