//go:build ignore

// Capture of plain TCP traffic at the socket layer's tracepoints: no kprobes
// or fentry on our kernels, and no syscall tracepoints either, because
// enabling any one of those puts every syscall of every task on the host on
// the slow entry path. sock:sock_send_length and sock:sock_recv_length fire
// inside the syscall once the bytes have moved, with the socket; which
// syscall it is and where its user buffers are come from the task's saved
// user registers (x86-64). Roles come from sock:inet_sock_set_state, the end
// of a connection from tcp:tcp_destroy_sock. Files and pipes never reach a
// program.

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
#define MSG_PEEK 2
#define MSG_TRUNC 0x20
#define MSG_ERRQUEUE 0x2000
#define RCV_SHUTDOWN 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define PF_KTHREAD 0x00200000
#define TS_COMPAT 0x0002 // the task is in a 32-bit syscall

// x86-64 syscall numbers of the data syscalls, as in orig_ax.
#define NR_READ 0
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#define NR_RECVMMSG 299
#define NR_SENDMMSG 307
#define UIO_MAXIOV 1024

// One event carries at most CHUNK_SIZE bytes: a syscall (or one message of
// a recvmmsg/sendmmsg) is copied as a sequence of chunk events by a
// bpf_loop, up to syscall_cap bytes, and its last TAIL_SIZE bytes; the
// middle is skipped, not copied.
#define CHUNK_SIZE (16 * 1024)
// The end of a syscall past its cap is copied too: a body that ends there
// and the start of the next pipelined message (a client sending a large
// upload and its next request in one write, a server answering two
// requests in one writev) then parse; the cost stays bounded per syscall.
#define TAIL_SIZE (64 * 1024)

enum kind { KIND_OPEN = 1, KIND_CLOSE = 2, KIND_DATA = 3 };
enum role { ROLE_UNKNOWN = 0, ROLE_SERVER = 1, ROLE_CLIENT = 2 };
enum dir { DIR_INGRESS = 0, DIR_EGRESS = 1 };
// FLAG_UNAVAILABLE: the bytes moved but not through user memory that can be
// read here (sendfile, splice, io_uring, 32-bit syscalls): counted, no
// payload. FLAG_AFTER_LOSS: the record before this one in its direction did
// not fit in the ring, so a gap before pos is a loss, not a record still to
// come from another CPU; userspace need not wait for it.
// FLAG_SKIPPED: the bytes were left in user memory on purpose: the agent
// asked to skip them (the rest of a body past its cap) or they are past the
// per-syscall cap. No payload; the agent frames them as body bytes.
enum flag { FLAG_UNAVAILABLE = 1, FLAG_AFTER_LOSS = 2, FLAG_SKIPPED = 4 };

// Header of every ring buffer record, followed by len payload bytes.
// Addresses are IPv6 or v4-mapped IPv4, ports in host order.
struct event {
	__u64 ts;    // bpf_ktime_get_ns at the syscall
	__u64 start; // creation time of the connection, part of its id
	__u64 pos;   // stream position of the first byte (data)
	__u32 tgid;  // process that first moved data on the connection, part of its id
	__u32 tid;
	__s32 fd;   // its fd then, part of the id; -1 when not known
	__u32 size; // stream bytes covered (data); more than len when bytes were lost
	__u32 len;  // payload bytes that follow the header
	__u16 lport;
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[16];
	__u8 kind;
	__u8 role;
	__u8 dir;
	__u8 flags; // enum flag, bits
	__u8 pad[4];
	__u64 cgroup; // cgroup v2 id of the process
};

// A record reserved in the ring buffer and filled in place: a chunk of a
// flat buffer (read, write) is copied once, from user memory straight into
// the ring. Its size is one of the size classes below, at least the header
// plus len bytes; the agent reads len, not the record size.
struct record {
	struct event hdr;
	__u8 data[CHUNK_SIZE];
};

// State of the copy loop: the bytes of one syscall (or one message of a
// mmsg call) are gathered from their segments into chunks of CHUNK_SIZE.
// It lives in map memory, not on the stack: the verifier then knows nothing
// of its values and checks the loop body once instead of per iteration.
struct copy_state {
	__u64 iov;      // next user iovec entry
	__u64 base;     // user address of the current segment
	__u64 seg_left; // bytes left in the current segment
	__u64 left;     // bytes of the syscall not yet placed in a chunk
	__u64 pos;      // stream position of the chunk being filled
	__u64 nseg;     // iovec entries not yet read
	__u64 skip;     // bytes at the start to pass over without copying
	__u32 fill;     // payload bytes in the chunk being filled
	__u32 size;     // stream bytes the chunk covers: fill, plus lost bytes at its end
};

// State of the copy of one flat buffer (read, write), a bpf_loop context
// on the program's stack.
struct flat_copy {
	struct event h; // header of the next chunk
	__u64 buf;      // user address of the next chunk
	__u64 left;     // bytes still to copy
	__u64 pos;      // stream position of the next chunk
};

// data is twice a chunk so the verifier can prove any copy at an offset
// below CHUNK_SIZE of at most CHUNK_SIZE bytes stays inside.
struct event_buf {
	struct event hdr;
	__u8 data[2 * CHUNK_SIZE];
	struct copy_state st; // after data: never sent
};

// Drop counters; every byte or event that does not reach userspace is
// counted in one of them.
struct counters {
	__u64 ringbuf_full;       // events lost because the ring buffer was full
	__u64 ringbuf_full_bytes; // stream bytes those events covered
	__u64 truncated_bytes;    // bytes lost because iovec entries could not be read
	__u64 copy_failed;        // events with bytes that could not be read from user memory
	__u64 copy_failed_bytes;  // those bytes
	__u64 conn_map_full;      // connections that could not be tracked
	__u64 unavailable_bytes;  // bytes that moved outside user memory we can read
	__u64 copied_bytes;       // payload bytes copied into the ring (not a drop)
	__u64 skipped_bytes;      // bytes left uncopied on purpose: FLAG_SKIPPED (not a drop)
};

// A connection as the agent names it (event.ConnID): the key of skips.
struct conn_key {
	__u64 start;
	__u32 tgid;
	__s32 fd;
};

// The bytes the agent does not need, by enum dir: stream positions
// [from, to) are not copied (the part of a body past its cap). The agent
// sets them once it has read the head, before the data gets there.
struct skip_to {
	__u64 from[2];
	__u64 to[2];
};

// A tracked connection, keyed by its struct sock. The key is unique while
// the socket lives; tcp_destroy_sock removes it before the memory is reused.
struct conn_info {
	__u64 start;
	__u64 next[2]; // by enum dir: stream position after the latest event
	__u32 seq0[2]; // by enum dir: TCP sequence number at stream position 0
	__u32 tgid;
	__s32 fd;
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u8 role;
	__u8 ignored; // filtered out: nothing of it is emitted
	__u8 lost[2]; // by enum dir: its last data record did not fit in the ring
};

// Where a thread is in its recvmmsg/sendmmsg call: the kernel moves the
// messages one by one, each through the tracepoint.
struct mmsg_state {
	__u64 vec; // the call's mmsghdr array
	__u32 nr;  // the call's syscall number
	__u32 next; // index of the message the next tracepoint is for
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 32 << 20);
} events SEC(".maps");

// Task storage: only threads that use recvmmsg/sendmmsg on a tracked
// socket get an entry, and it goes with the thread.
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mmsg_state);
} mmsgs SEC(".maps");

// LRU as a safety net: an entry whose destroy was missed (the agent
// attached while the socket was being torn down) is evicted rather than
// filling the map.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn_info);
} conns SEC(".maps");

// Roles of connections opened while the programs are attached, by struct
// sock: written on the handshake (in softirq, where the process is not
// known), taken at the connection's first data. LRU: connections of
// processes that are not captured never take theirs.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} roles SEC(".maps");

// Written by the agent, read at every data event of a connection. LRU: an
// entry the agent could not remove (its close event was lost) is evicted.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct conn_key);
	__type(value, struct skip_to);
} skips SEC(".maps");

// Ports to capture (local or remote), used when filter_ports is set.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

// Processes (tgid) to capture, used when filter_pids is set.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} pids SEC(".maps");

// cgroup v2 ids to capture, used when filter_cgroups is set.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} cgroups SEC(".maps");

// Events are built here, one entry per CPU (the stack is 512 bytes). Not a
// per-CPU array, whose values are limited to 32 KiB; the agent sets
// max_entries to the number of possible CPUs.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
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
volatile const __u8 filter_pids;
volatile const __u8 filter_cgroups;
// When sampling is set, a connection is captured when the hash of its id
// is below sample_threshold (rate * 2^32).
volatile const __u8 sampling;
volatile const __u32 sample_threshold;
// Bytes copied per syscall at most (or per message of a mmsg call): the
// agent's body cap and room for a head. The default is the agent's.
volatile const __u32 syscall_cap = (1 << 20) + (64 << 10);
// Events are written without waking the reader (it polls with a short
// deadline); the record that takes the data pending past wakeup_bytes
// wakes it. One wakeup per event halves the throughput of a traced
// server. The agent sets a sixteenth of the ring.
volatile const __u32 wakeup_bytes = 2 << 20;

#define COUNT(field, n)                                                  \
	do {                                                             \
		__u32 zero = 0;                                          \
		struct counters *c = bpf_map_lookup_elem(&stats, &zero); \
		if (c)                                                   \
			c->field += (n);                                 \
	} while (0)

// Whether the current process is to be captured at all. Checked before
// anything else so other processes' sockets cost a lookup or two.
static __always_inline int process_wanted(__u32 tgid)
{
	if (tgid == self_tgid)
		return 0;
	if (filter_pids && !bpf_map_lookup_elem(&pids, &tgid))
		return 0;
	if (filter_cgroups) {
		__u64 cg = bpf_get_current_cgroup_id();
		if (!bpf_map_lookup_elem(&cgroups, &cg))
			return 0;
	}
	return 1;
}

static __always_inline int port_wanted(__u16 a, __u16 b)
{
	return !filter_ports || bpf_map_lookup_elem(&ports, &a) || bpf_map_lookup_elem(&ports, &b);
}

// Turns a pointer read as a plain value into a read-only BTF pointer, so
// its fields are read with direct loads instead of helper calls. The
// verifier turns the call into a register move.
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

static __always_inline void read_addrs(struct conn_info *ci, struct sock *sk)
{
	ci->lport = sk->__sk_common.skc_num;
	ci->rport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (sk->__sk_common.skc_family == AF_INET) {
		ci->laddr[10] = ci->laddr[11] = 0xff;
		ci->raddr[10] = ci->raddr[11] = 0xff;
		__builtin_memcpy(&ci->laddr[12], &sk->__sk_common.skc_rcv_saddr, 4);
		__builtin_memcpy(&ci->raddr[12], &sk->__sk_common.skc_daddr, 4);
		return;
	}
	// IPv6 sockets talking IPv4 hold v4-mapped addresses here already.
	__builtin_memcpy(ci->laddr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
	__builtin_memcpy(ci->raddr, &sk->__sk_common.skc_v6_daddr, 16);
}

// A 32-bit mix of the connection (murmur3's finalizer): the sampling
// decision, made once per connection so it is captured whole or not at all.
static __always_inline __u32 conn_hash(__u64 key, __u64 start)
{
	__u64 h = start ^ key;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return (__u32)h;
}

// The sequence number after the last byte moved in direction dir.
static __always_inline __u32 seq_end(struct tcp_sock *tp, __u8 dir)
{
	if (dir == DIR_EGRESS)
		return tp->write_seq;
	// A read that reaches the peer's FIN consumes it too, and a FIN takes a
	// sequence number: it is consumed when nothing is left to read.
	__u32 end = tp->copied_seq;
	if ((tp->inet_conn.icsk_inet.sk.sk_shutdown & RCV_SHUTDOWN) && end == tp->rcv_nxt)
		end--;
	return end;
}

// The stream position of the n bytes that just moved in direction dir.
// It comes from the socket's own sequence numbers, so bytes that moved
// without passing these tracepoints (splice from the socket, TCP zero-copy
// receive) show as a gap instead of being left out unseen. next extends the
// 32-bit sequence space: consecutive events are less than 2 GiB apart.
static __always_inline __u64 stream_pos(struct conn_info *ci, struct tcp_sock *tp, __u8 dir, __u32 n)
{
	dir &= 1;
	__u64 pos = ci->next[dir];
	// Under an upper layer protocol (kernel TLS) the sequence numbers count
	// its records, not the bytes the user moved: those are counted instead.
	if (!tp->inet_conn.icsk_ulp_ops) {
		__u32 rel = seq_end(tp, dir) - n - ci->seq0[dir];
		pos += (__s32)(rel - (__u32)pos);
	}
	ci->next[dir] = pos + n;
	return pos;
}

// Starts tracking the connection of sk at its first data, n bytes in
// direction dir: both streams start at position 0 here.
static __always_inline struct conn_info *track(__u64 key, struct sock *sk, struct tcp_sock *tp, __u32 tgid,
					       int fd, __u8 dir, __u32 n)
{
	struct conn_info ci = {};
	ci.start = bpf_ktime_get_ns();
	ci.tgid = tgid;
	ci.fd = fd;
	__u8 *role = bpf_map_lookup_elem(&roles, &key);
	if (role) {
		ci.role = *role;
		bpf_map_delete_elem(&roles, &key);
	}
	read_addrs(&ci, sk);
	ci.seq0[DIR_INGRESS] = seq_end(tp, DIR_INGRESS) - (dir == DIR_INGRESS ? n : 0);
	ci.seq0[DIR_EGRESS] = seq_end(tp, DIR_EGRESS) - (dir == DIR_EGRESS ? n : 0);
	if (!port_wanted(ci.lport, ci.rport))
		ci.ignored = 1;
	if (sampling && conn_hash(key, ci.start) >= sample_threshold)
		ci.ignored = 1;
	if (bpf_map_update_elem(&conns, &key, &ci, BPF_ANY)) {
		COUNT(conn_map_full, 1);
		return NULL;
	}
	return bpf_map_lookup_elem(&conns, &key);
}

// The wakeup flag for a record of size bytes, given the data pending
// before it. Only the record that crosses wakeup_bytes wakes the reader:
// a wakeup is an IPI (a VM exit in a VM), and waking on every record past
// the mark cost a traced server 4 % of its CPU. A crossing missed by two
// CPUs racing is picked up by the reader's poll.
static __always_inline __u64 wakeup_flags(__u64 before, __u64 size)
{
	return before < wakeup_bytes && before + size >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									: BPF_RB_NO_WAKEUP;
}

// The wakeup flag for a reserved record: the data pending includes it.
static __always_inline __u64 submit_flags(__u64 size)
{
	return wakeup_flags(bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) - size, size);
}

static __always_inline void count_full(__u64 size)
{
	COUNT(ringbuf_full, 1);
	COUNT(ringbuf_full_bytes, size);
}

// Writes the event in b with len payload bytes (bounded by the caller);
// non-zero when the ring was full.
static __always_inline int output(struct event_buf *b, __u32 len)
{
	asm volatile("" : "+r"(len));
	if (len > CHUNK_SIZE)
		return 0;
	b->hdr.len = len;
	__u64 flags = wakeup_flags(bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA), sizeof(b->hdr) + len);
	if (bpf_ringbuf_output(&events, b, sizeof(b->hdr) + len, flags)) {
		count_full(b->hdr.size);
		return -1;
	}
	COUNT(copied_bytes, len);
	return 0;
}

static __always_inline __u8 loss_flag(int lost)
{
	return lost ? FLAG_AFTER_LOSS : 0;
}

static __always_inline void fill_header(struct event *e, __u8 kind, struct conn_info *ci)
{
	e->ts = bpf_ktime_get_ns();
	e->start = ci->start;
	e->pos = 0;
	e->tgid = ci->tgid;
	e->tid = (__u32)bpf_get_current_pid_tgid();
	e->fd = ci->fd;
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
	e->flags = 0;
	__builtin_memset(e->pad, 0, sizeof(e->pad)); // ring memory holds older records
	e->cgroup = bpf_get_current_cgroup_id();
}

static __always_inline struct event_buf *header(__u8 kind, struct conn_info *ci)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct event_buf *b = bpf_map_lookup_elem(&bufs, &cpu);
	if (b)
		fill_header(&b->hdr, kind, ci);
	return b;
}

static __always_inline void emit_conn(__u8 kind, struct conn_info *ci)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_full(0);
		return;
	}
	fill_header(e, kind, ci);
	bpf_ringbuf_submit(e, submit_flags(sizeof(*e)));
}

// Reserves a record for n payload bytes (n <= CHUNK_SIZE) in the smallest
// size class that holds them: the verifier needs a constant size, and the
// classes keep the space wasted in the ring (and copied by the agent) under
// half of the record.
#define RESERVE_CLASS(cap)                                                                 \
	if (n <= (cap)) {                                                                  \
		*size = sizeof(struct event) + (cap);                                      \
		return bpf_ringbuf_reserve(&events, sizeof(struct event) + (cap), 0);      \
	}
static __always_inline struct record *reserve(__u32 n, __u32 *size)
{
	RESERVE_CLASS(128)
	RESERVE_CLASS(256)
	RESERVE_CLASS(512)
	RESERVE_CLASS(1024)
	RESERVE_CLASS(2048)
	RESERVE_CLASS(4096)
	RESERVE_CLASS(8192)
	RESERVE_CLASS(CHUNK_SIZE)
	return NULL;
}

// Emits one chunk of a flat buffer: n bytes at buf copied into a reserved
// record, which covers size stream bytes from pos (more than n for the last
// chunk of a truncated syscall). Non-zero when the ring was full.
static __always_inline int emit_chunk(struct event *h, __u64 buf, __u32 n, __u64 size, __u64 pos)
{
	asm volatile("" : "+r"(n));
	if (n > CHUNK_SIZE)
		return 0;
	__u32 rsize = 0;
	struct record *r = reserve(n, &rsize);
	if (!r) {
		count_full(size);
		return -1;
	}
	r->hdr = *h;
	r->hdr.pos = pos;
	r->hdr.size = size;
	r->hdr.len = n;
	if (bpf_probe_read_user(r->data, n, (void *)buf)) {
		// The bytes are lost; the event covers them with no payload.
		r->hdr.len = 0;
		COUNT(copy_failed, 1);
		COUNT(copy_failed_bytes, n);
	} else {
		COUNT(copied_bytes, n);
	}
	bpf_ringbuf_submit(r, submit_flags(rsize));
	return 0;
}

// One step of a flat copy (a bpf_loop callback): the next chunk.
static long flat_step(__u32 i, void *ctx)
{
	struct flat_copy *f = ctx;
	if (f->left == 0)
		return 1;
	__u32 n = f->left < CHUNK_SIZE ? f->left : CHUNK_SIZE;
	f->h.flags = loss_flag(emit_chunk(&f->h, f->buf, n, n, f->pos));
	f->buf += n;
	f->pos += n;
	f->left -= n;
	return 0;
}

// Emits total bytes of one flat buffer, from stream position pos, as
// chunks copied straight into the ring (at most copy bytes of them).
// Returns the loss flag of the last.
static __always_inline __u8 emit_flat(struct conn_info *ci, __u8 dir, __u64 pos, __u64 buf, __u64 copy)
{
	struct flat_copy f = {.buf = buf, .left = copy, .pos = pos};
	fill_header(&f.h, KIND_DATA, ci);
	f.h.dir = dir;
	f.h.flags = loss_flag(ci->lost[dir & 1]);
	bpf_loop((copy + CHUNK_SIZE - 1) / CHUNK_SIZE, flat_step, &f, 0);
	return f.h.flags;
}

static __always_inline void flush(struct event_buf *b, struct copy_state *s)
{
	b->hdr.pos = s->pos;
	b->hdr.size = s->size;
	b->hdr.flags = loss_flag(output(b, s->fill));
	s->pos += s->size;
	s->fill = 0;
	s->size = 0;
}

// One step of the copy loop (a bpf_loop callback, verified once): reads the
// next iovec entry or copies as much of the current segment as fits.
static long copy_step(__u32 i, void *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct event_buf *b = bpf_map_lookup_elem(&bufs, &cpu);
	if (!b)
		return 1;
	struct copy_state *s = &b->st;
	if (s->left == 0)
		return 1;
	if (s->seg_left == 0) {
		if (!s->iov || s->nseg == 0)
			return 1;
		struct iovec v;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)s->iov))
			return 1;
		s->iov += sizeof(v);
		s->nseg--;
		s->base = (__u64)v.iov_base;
		s->seg_left = v.iov_len;
		return 0;
	}
	if (s->skip) {
		__u64 k = s->skip < s->seg_left ? s->skip : s->seg_left;
		s->base += k;
		s->seg_left -= k;
		s->skip -= k;
		return 0;
	}
	__u32 fill = s->fill & (CHUNK_SIZE - 1); // below CHUNK_SIZE: full chunks are flushed
	__u64 n = CHUNK_SIZE - fill;
	if (n > s->seg_left)
		n = s->seg_left;
	if (n > s->left)
		n = s->left;
	// clang 14 drops the bound above; make the verifier see it again.
	asm volatile("" : "+r"(n));
	if (n > CHUNK_SIZE)
		return 1;
	int failed = bpf_probe_read_user(&b->data[fill], n, (void *)s->base);
	s->base += n;
	s->seg_left -= n;
	s->left -= n;
	s->size += n;
	if (failed) {
		// The bytes are lost; they end this chunk so Data stays a prefix.
		COUNT(copy_failed, 1);
		COUNT(copy_failed_bytes, n);
	} else {
		s->fill = fill + n;
	}
	if (failed || s->fill == CHUNK_SIZE || s->left == 0)
		flush(b, s);
	return 0;
}

// Emits copy bytes from nseg iovec entries, after the first skip bytes of
// them, as chunk events. The stream position advances by copy even when
// bytes are dropped, so userspace sees the gap; the last event covers what
// could not be copied (an iovec entry that could not be read). Returns the
// loss flag of the last event.
static __always_inline __u8 emit_iov(struct conn_info *ci, __u8 dir, __u64 pos, __u64 iov, __u64 nseg,
				     __u64 skip, __u64 copy)
{
	struct event_buf *b = header(KIND_DATA, ci);
	if (!b)
		return 0;
	b->hdr.dir = dir;
	b->hdr.flags = loss_flag(ci->lost[dir & 1]);
	if (nseg > UIO_MAXIOV) // the syscall succeeded, so it is not
		return 0;
	struct copy_state *s = &b->st;
	s->iov = iov;
	s->base = 0;
	s->seg_left = 0;
	s->left = copy;
	s->pos = pos;
	s->nseg = nseg;
	s->skip = skip;
	s->fill = 0;
	s->size = 0;
	// A step reads an entry, skips into it, or fills or ends a chunk.
	bpf_loop(3 * nseg + 2 * (copy / CHUNK_SIZE) + 2, copy_step, NULL, 0);
	if (s->left != 0 || s->fill != 0) {
		COUNT(truncated_bytes, s->left);
		s->size += s->left;
		s->left = 0;
		flush(b, s);
	}
	return b->hdr.flags;
}

// Emits a data event without payload for total bytes from pos, with flags
// (FLAG_UNAVAILABLE or FLAG_SKIPPED); returns its loss flag.
static __always_inline __u8 emit_empty(struct conn_info *ci, __u8 dir, __u64 pos, __u64 total, __u8 flags)
{
	struct event_buf *b = header(KIND_DATA, ci);
	if (!b)
		return 0;
	b->hdr.dir = dir;
	b->hdr.flags = flags | loss_flag(ci->lost[dir & 1]);
	b->hdr.pos = pos;
	b->hdr.size = total;
	if (flags & FLAG_SKIPPED)
		COUNT(skipped_bytes, total);
	else
		COUNT(unavailable_bytes, total);
	return loss_flag(output(b, 0));
}

// Emits a data event for bytes that moved outside user memory we can read.
static __always_inline void emit_unavailable(struct conn_info *ci, __u8 dir, __u64 pos, __u64 total)
{
	ci->lost[dir & 1] = emit_empty(ci, dir, pos, total, FLAG_UNAVAILABLE) != 0;
}

// Where the bytes of one syscall (or one message of a mmsg call) are in
// user memory: a flat buffer at addr (nseg 0) or nseg iovec entries at
// addr. They moved from stream position pos.
struct user_bytes {
	__u64 pos;
	__u64 addr;
	__u64 nseg;
};

// Copies up to copy bytes (at most syscall_cap) at offset off of the bytes
// u points to; returns how many. A global function: the verifier checks it
// once, on its own, instead of at each of its calls in emit_data, whose
// paths it could not get through otherwise.
__noinline __u64 emit_part(struct conn_info *ci, struct user_bytes *u, __u8 dir, __u64 off, __u64 copy)
{
	if (!ci || !u)
		return 0;
	dir &= 1;
	if (copy > syscall_cap)
		copy = syscall_cap;
	if (!copy)
		return 0;
	if (u->nseg)
		ci->lost[dir] = emit_iov(ci, dir, u->pos + off, u->addr, u->nseg, off, copy) != 0;
	else
		ci->lost[dir] = emit_flat(ci, dir, u->pos + off, u->addr + off, copy) != 0;
	return copy;
}

// Emits n bytes that just moved from pos, from the flat buffer at addr
// (nseg 0) or nseg iovec entries at addr: copied, but for those in the
// range the agent asked to skip and those between syscall_cap copied and
// the last TAIL_SIZE bytes, which are one event without payload each.
static __always_inline void emit_data(struct conn_info *ci, __u8 dir, __u64 pos, __u64 addr, __u64 nseg,
				      __u64 n)
{
	dir &= 1;
	__u64 end = pos + n, from = pos, to = pos; // no range: all of it is after one
	struct conn_key k = {.start = ci->start, .tgid = ci->tgid, .fd = ci->fd};
	struct skip_to *sk = bpf_map_lookup_elem(&skips, &k);
	if (sk && sk->to[dir] > pos && sk->from[dir] < end) {
		from = sk->from[dir] > pos ? sk->from[dir] : pos;
		to = sk->to[dir] < end ? sk->to[dir] : end;
	}
	// Before the range (up to the cap), the range, after it (up to the cap,
	// then the tail).
	struct user_bytes u = {.pos = pos, .addr = addr, .nseg = nseg};
	__u64 off = emit_part(ci, &u, dir, 0, from - pos);
	if (off < to - pos) {
		ci->lost[dir] = emit_empty(ci, dir, pos + off, to - pos - off, FLAG_SKIPPED) != 0;
		off = to - pos;
	}
	off += emit_part(ci, &u, dir, off, end - to);
	if (off >= n)
		return;
	// Past the cap: the middle is skipped, the tail copied. The rest is
	// after the range, so the agent has not asked to skip any of it.
	if (n - off > TAIL_SIZE) {
		ci->lost[dir] = emit_empty(ci, dir, pos + off, n - TAIL_SIZE - off, FLAG_SKIPPED) != 0;
		off = n - TAIL_SIZE;
	}
	emit_part(ci, &u, dir, off, n - off);
}

// The index of the message of thread task's recvmmsg/sendmmsg call (nr,
// mmsghdr array vec of vlen entries) that this tracepoint is for, or -1.
// The kernel moves the messages in order, one per tracepoint, and a call
// ends at vlen messages or at the first that fails, which passes here too
// (mmsg_empty). A call that ends otherwise (recvmmsg's timeout, a sendmmsg
// cut short by a partial send) leaves the next call on the same array, if
// it starts at the same address, off by the messages moved.
static __always_inline int mmsg_index(struct task_struct *task, long nr, __u64 vec, __u64 vlen)
{
	struct mmsg_state *st = bpf_task_storage_get(&mmsgs, task, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st)
		return -1;
	__u32 i = 0;
	if (st->nr == nr && st->vec == vec && st->next < vlen)
		i = st->next;
	st->nr = nr;
	st->vec = vec;
	st->next = i + 1;
	return i;
}

// The x86-64 syscall the current user task is in, or -1 (a 32-bit
// syscall). regs are its saved user registers.
static __always_inline long syscall_nr(struct task_struct *task, struct pt_regs **regs)
{
	if (task->thread_info.status & TS_COMPAT)
		return -1;
	*regs = (struct pt_regs *)bpf_task_pt_regs(task);
	return (*regs)->orig_ax;
}

// The direction in which data syscall nr moves bytes.
static __always_inline __u8 nr_dir(long nr)
{
	switch (nr) {
	case NR_WRITE:
	case NR_SENDTO:
	case NR_WRITEV:
	case NR_SENDMSG:
	case NR_SENDMMSG:
		return DIR_EGRESS;
	}
	return DIR_INGRESS;
}

// A message of the thread's recvmmsg/sendmmsg call, if it is in one, moved
// nothing (ret 0: the call goes on to the next message) or failed (ret < 0:
// the call ends). Other threads have no state and leave at once.
static __always_inline void mmsg_empty(struct task_struct *task, int ret)
{
	struct mmsg_state *st = bpf_task_storage_get(&mmsgs, task, NULL, 0);
	if (!st || !st->next)
		return;
	struct pt_regs *regs = NULL;
	if (ret == 0 && syscall_nr(task, &regs) == st->nr && regs && regs->si == st->vec)
		st->next++;
	else
		st->next = 0;
}

// Emits the bytes of message vec[i] of a recvmmsg/sendmmsg, or counts them
// as unavailable when its place in the call is not known.
static __always_inline void emit_mmsg(struct task_struct *task, struct conn_info *ci, __u8 dir, __u64 pos,
				      long nr, struct pt_regs *regs, __u64 n)
{
	__u64 vlen = regs->dx;
	int i = mmsg_index(task, nr, regs->si, vlen);
	struct user_msghdr m;
	if (i < 0 || i >= UIO_MAXIOV ||
	    bpf_probe_read_user(&m, sizeof(m), &((struct mmsghdr *)regs->si)[i].msg_hdr) || !m.msg_iovlen) {
		emit_unavailable(ci, dir, pos, n);
		return;
	}
	emit_data(ci, dir, pos, (__u64)m.msg_iov, m.msg_iovlen, n);
}

// ret bytes (ret > 0), or a failure (ret <= 0), just moved through socket
// skp in direction dir, inside a syscall of the current task; flags are a
// receive's.
static __always_inline int on_data(void *skp, int ret, int flags, __u8 dir)
{
	struct sock *sk = bpf_rdonly_cast(skp, bpf_core_type_id_kernel(struct sock));
	__u16 family = sk->__sk_common.skc_family;
	// A raw socket may say IPPROTO_TCP too, hence the type.
	if (sk->sk_protocol != IPPROTO_TCP || sk->sk_type != SOCK_STREAM ||
	    (family != AF_INET && family != AF_INET6))
		return 0;
	// Peeked bytes are read again later; the error queue is not the stream.
	if (dir == DIR_INGRESS && (flags & (MSG_PEEK | MSG_ERRQUEUE)))
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (ret <= 0) {
		// Nothing moved (a read that found nothing, an error): only a
		// recvmmsg/sendmmsg of this thread needs to know.
		mmsg_empty(task, ret);
		return 0;
	}
	// In-kernel socket users (NFS, iSCSI) are no process's traffic.
	if (task->flags & PF_KTHREAD)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!process_wanted(tgid))
		return 0;
	struct pt_regs *regs = NULL;
	long nr = syscall_nr(task, &regs);
	struct tcp_sock *tp = bpf_rdonly_cast(skp, bpf_core_type_id_kernel(struct tcp_sock));
	__u64 key = (__u64)skp;
	struct conn_info *ci = bpf_map_lookup_elem(&conns, &key);
	if (!ci) {
		// All data syscalls take the fd first; others leave it unknown.
		ci = track(key, sk, tp, tgid, nr >= 0 && regs ? (int)regs->di : -1, dir, ret);
		if (!ci)
			return 0;
		if (!ci->ignored && ci->role != ROLE_UNKNOWN)
			emit_conn(KIND_OPEN, ci);
	}
	if (ci->ignored)
		return 0;
	__u64 pos = stream_pos(ci, tp, dir, ret);
	if (!regs || (flags & MSG_TRUNC)) {
		// MSG_TRUNC on TCP discards the bytes instead of copying them.
		emit_unavailable(ci, dir, pos, ret);
		return 0;
	}
	// A syscall that moves bytes the other way cannot have moved these: they
	// are counted rather than copied from a buffer that does not hold them.
	switch (dir == nr_dir(nr) ? nr : -1) {
	case NR_READ:
	case NR_RECVFROM:
	case NR_WRITE:
	case NR_SENDTO:
		emit_data(ci, dir, pos, regs->si, 0, ret);
		return 0;
	case NR_READV:
	case NR_WRITEV:
		emit_data(ci, dir, pos, regs->si, regs->dx, ret);
		return 0;
	case NR_RECVMSG:
	case NR_SENDMSG: {
		struct user_msghdr m;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)regs->si) || !m.msg_iovlen)
			break;
		emit_data(ci, dir, pos, (__u64)m.msg_iov, m.msg_iovlen, ret);
		return 0;
	}
	case NR_RECVMMSG:
	case NR_SENDMMSG:
		emit_mmsg(task, ci, dir, pos, nr, regs, ret);
		return 0;
	}
	// sendfile, splice, io_uring, or a user buffer that cannot be read.
	emit_unavailable(ci, dir, pos, ret);
	return 0;
}

// Raw tracepoints: the programs get the tracepoint's arguments as they are,
// without the trace record a classic tracepoint fills first for every call
// on every socket of the host.
SEC("raw_tracepoint/sock_send_length")
int sock_send(struct bpf_raw_tracepoint_args *ctx)
{
	// (struct sock *sk, int ret, int flags)
	return on_data((void *)ctx->args[0], (int)ctx->args[1], 0, DIR_EGRESS);
}

SEC("raw_tracepoint/sock_recv_length")
int sock_recv(struct bpf_raw_tracepoint_args *ctx)
{
	return on_data((void *)ctx->args[0], (int)ctx->args[1], (int)ctx->args[2], DIR_INGRESS);
}

// Notes the role of a connection being opened: SYN_SENT is a connect,
// SYN_RECV a connection a listener accepts (set on the new socket).
SEC("raw_tracepoint/inet_sock_set_state")
int set_state(struct bpf_raw_tracepoint_args *ctx)
{
	// (const struct sock *sk, int oldstate, int newstate)
	struct sock *sk = bpf_rdonly_cast((void *)ctx->args[0], bpf_core_type_id_kernel(struct sock));
	int newstate = (int)ctx->args[2];
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u8 role;
	if (newstate == TCP_SYN_SENT)
		role = ROLE_CLIENT;
	else if (newstate == TCP_SYN_RECV)
		role = ROLE_SERVER;
	else
		return 0;
	// A connecting socket has no local port yet: the remote one decides.
	if (!port_wanted(sk->__sk_common.skc_num, bpf_ntohs(sk->__sk_common.skc_dport)))
		return 0;
	__u64 key = ctx->args[0];
	bpf_map_update_elem(&roles, &key, &role, BPF_ANY);
	return 0;
}

// The socket is freed: no more data can move through it (its file is
// gone), and its address may be reused by the next socket.
SEC("raw_tracepoint/tcp_destroy_sock")
int destroy_sock(struct bpf_raw_tracepoint_args *ctx)
{
	// (struct sock *sk)
	__u64 key = ctx->args[0];
	struct conn_info *ci = bpf_map_lookup_elem(&conns, &key);
	if (!ci)
		return 0;
	if (!ci->ignored)
		emit_conn(KIND_CLOSE, ci);
	bpf_map_delete_elem(&conns, &key);
	return 0;
}
