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
// Steps of the copy loop: one per iovec entry read or bytes copied. It
// bounds the iovec entries followed per syscall; the rest is truncated.
#define MAX_STEPS 128
// Messages of a recvmmsg/sendmmsg whose iovecs are copied; the lengths of
// up to MAX_MMSG_LEN messages are read so the stream position stays right.
#define MAX_MSGS 8
#define MAX_MMSG_LEN 64
// Events are written without waking the reader (it polls with a short
// deadline); the record that takes the data pending past this much wakes
// it. One wakeup per event halves the throughput of a traced server.
#define WAKEUP_BYTES (256 * 1024)

enum kind { KIND_OPEN = 1, KIND_CLOSE = 2, KIND_DATA = 3 };
enum role { ROLE_UNKNOWN = 0, ROLE_SERVER = 1, ROLE_CLIENT = 2 };
enum dir { DIR_INGRESS = 0, DIR_EGRESS = 1 };
// FLAG_AFTER_LOSS: the record before this one in its direction did not fit
// in the ring, so a gap before pos is a loss, not a record still to come
// from another CPU; userspace need not wait for it.
enum flag { FLAG_UNAVAILABLE = 1, FLAG_AFTER_LOSS = 2 };
// The syscall an entry in the stash belongs to, so an exit never consumes
// the arguments of a different syscall (e.g. around attach time).
enum stash_op {
	STASH_READ = 1,
	STASH_WRITE,
	STASH_CONNECT,
	STASH_READV,
	STASH_WRITEV,
	STASH_RECVMSG,
	STASH_SENDMSG,
	STASH_RECVMMSG,
	STASH_SENDMMSG,
	STASH_SENDFILE,
};

// Header of every ring buffer record, followed by len payload bytes.
// Addresses are IPv6 or v4-mapped IPv4, ports in host order.
struct event {
	__u64 ts;    // bpf_ktime_get_ns at the syscall
	__u64 start; // creation time of the connection, part of its id
	__u64 pos;   // stream position of the first byte (data)
	__u32 tgid;
	__u32 tid;
	__s32 fd;
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
	__u64 iov;      // next user iovec entry; 0 when the syscall had one flat buffer
	__u64 base;     // user address of the current segment
	__u64 seg_left; // bytes left in the current segment
	__u64 left;     // bytes of the syscall not yet placed in a chunk
	__u64 pos;      // stream position of the chunk being filled
	__u64 nseg;     // iovec entries not yet read
	__u32 fill;     // payload bytes in the chunk being filled
	__u32 size;     // stream bytes the chunk covers: fill, plus lost bytes at its end
	__u32 chunks;   // chunks emitted
	__u32 pad;
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
	__u64 truncated_bytes;    // bytes past the per-syscall cap (chunks, iovecs, messages)
	__u64 copy_failed;        // events with bytes that could not be read from user memory
	__u64 copy_failed_bytes;  // those bytes
	__u64 stash_failed;       // syscalls lost because their arguments could not be stashed
	__u64 conn_map_full;      // connections that could not be tracked
	__u64 conn_lost;          // syscalls whose connection was closed while they ran
	__u64 conn_lost_bytes;    // bytes those syscalls moved
	__u64 unavailable_bytes;  // bytes sent with sendfile: counted, never in user memory
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
	__u8 lost[2]; // by enum dir: its last data record did not fit in the ring
};

// buf is the buffer (read, write), the iovec array (readv, writev,
// recvmsg, sendmsg; count entries) or the mmsghdr array (count messages).
struct args {
	__u64 buf;
	__u64 count;
	__s32 fd;
	__u32 op;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

// Per thread: a thread is in one syscall at a time, and the entry goes with
// the thread. Task storage rather than a hash keyed by pid_tgid: every exit
// of a file or pipe syscall looks here, and for a thread that never touched
// a tracked socket the lookup is a NULL check instead of a hash probe.
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
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

#define COUNT(field, n)                                                  \
	do {                                                             \
		__u32 zero = 0;                                          \
		struct counters *c = bpf_map_lookup_elem(&stats, &zero); \
		if (c)                                                   \
			c->field += (n);                                 \
	} while (0)

// Whether the current process is to be captured at all. Checked before
// anything else so other processes' syscalls cost a lookup or two.
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

// Turns a pointer read as a plain value into a read-only BTF pointer, so
// its fields are read with direct loads instead of helper calls. The
// verifier turns the call into a register move.
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

// The socket behind fd in the current process, or NULL for any other file.
// It runs on every data syscall of a file or pipe, so it reads through the
// task's trusted BTF pointer (plain loads, faults read as 0) instead of
// helper calls; only the variable index into the fd array needs one.
static __always_inline struct socket *sock_file(int fd)
{
	struct fdtable *fdt = bpf_get_current_task_btf()->files->fdt;
	if ((unsigned int)fd >= fdt->max_fds)
		return NULL;
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fdt->fd[fd]);
	f = bpf_rdonly_cast(f, bpf_core_type_id_kernel(struct file));
	if (!f || (f->f_inode->i_mode & S_IFMT) != S_IFSOCK)
		return NULL;
	return bpf_rdonly_cast(f->private_data, bpf_core_type_id_kernel(struct socket));
}

// The sock of a TCP socket over IPv4/IPv6, or NULL (unix, UDP, ...).
static __always_inline struct sock *tcp_sk(struct socket *sock)
{
	if (!sock || sock->type != SOCK_STREAM)
		return NULL;
	struct sock *sk = sock->sk;
	if (!sk)
		return NULL;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	if (sk->sk_protocol != IPPROTO_TCP)
		return NULL;
	return sk;
}

static __always_inline struct sock *tcp_sock(int fd)
{
	return tcp_sk(sock_file(fd));
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
	// IPv6 sockets talking IPv4 hold v4-mapped addresses here already.
	bpf_core_read(ci->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
	bpf_core_read(ci->raddr, 16, &sk->__sk_common.skc_v6_daddr);
}

// A 32-bit mix of the connection id (murmur3's finalizer): the sampling
// decision, made once per connection so it is captured whole or not at all.
static __always_inline __u32 conn_hash(struct conn_key *key, __u64 start)
{
	__u64 h = start ^ ((__u64)key->tgid << 32) ^ (__u32)key->fd;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return (__u32)h;
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
	if (sampling && conn_hash(key, ci.start) >= sample_threshold)
		ci.ignored = 1;
	if (bpf_map_update_elem(&conns, key, &ci, BPF_ANY)) {
		COUNT(conn_map_full, 1);
		return NULL;
	}
	return bpf_map_lookup_elem(&conns, key);
}

// The wakeup flag for a record of size bytes, given the data pending
// before it. Only the record that crosses WAKEUP_BYTES wakes the reader:
// a wakeup is an IPI (a VM exit in a VM), and waking on every record past
// the mark cost a traced server 4 % of its CPU. A crossing missed by two
// CPUs racing is picked up by the reader's poll.
static __always_inline __u64 wakeup_flags(__u64 before, __u64 size)
{
	return before < WAKEUP_BYTES && before + size >= WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
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
	return 0;
}

static __always_inline __u8 loss_flag(int lost)
{
	return lost ? FLAG_AFTER_LOSS : 0;
}

static __always_inline void fill_header(struct event *e, __u8 kind, struct conn_key *key,
					struct conn_info *ci)
{
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
	e->flags = 0;
	__builtin_memset(e->pad, 0, sizeof(e->pad)); // ring memory holds older records
	e->cgroup = bpf_get_current_cgroup_id();
}

static __always_inline struct event_buf *header(__u8 kind, struct conn_key *key, struct conn_info *ci)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct event_buf *b = bpf_map_lookup_elem(&bufs, &cpu);
	if (b)
		fill_header(&b->hdr, kind, key, ci);
	return b;
}

static __always_inline void emit_conn(__u8 kind, struct conn_key *key, struct conn_info *ci)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_full(0);
		return;
	}
	fill_header(e, kind, key, ci);
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
	}
	bpf_ringbuf_submit(r, submit_flags(rsize));
	return 0;
}

// Emits total bytes of one flat buffer as chunks copied straight into the
// ring; past MAX_CHUNKS chunks the last one covers the rest, counted as
// truncated.
static __always_inline void emit_flat(struct conn_key *key, struct conn_info *ci, __u8 dir, __u64 buf,
				      __u64 total)
{
	__u64 pos = __sync_fetch_and_add(&ci->pos[dir & 1], total);
	struct event h;
	fill_header(&h, KIND_DATA, key, ci);
	h.dir = dir;
	h.flags = loss_flag(ci->lost[dir & 1]);
	for (int i = 0; i < MAX_CHUNKS && total > 0; i++) {
		__u32 n = total < CHUNK_SIZE ? total : CHUNK_SIZE;
		__u64 size = n;
		if (i == MAX_CHUNKS - 1 && total > n) {
			size = total;
			COUNT(truncated_bytes, total - n);
		}
		h.flags = loss_flag(emit_chunk(&h, buf, n, size, pos));
		buf += n;
		pos += size;
		total -= size;
	}
	ci->lost[dir & 1] = h.flags != 0;
}

static __always_inline void flush(struct event_buf *b, struct copy_state *s)
{
	b->hdr.pos = s->pos;
	b->hdr.size = s->size;
	b->hdr.flags = loss_flag(output(b, s->fill));
	s->pos += s->size;
	s->fill = 0;
	s->size = 0;
	s->chunks++;
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
	if (s->left == 0 || s->chunks >= MAX_CHUNKS)
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

// Emits total bytes, from one buffer (iov == 0) or nseg iovec entries, as
// chunk events. The stream position advances by total even when bytes are
// dropped, so userspace sees the gap; the last event covers what was not
// copied (per-syscall cap, iovec entries past the loop).
static __always_inline void emit_data(struct conn_key *key, struct conn_info *ci, __u8 dir,
				      __u64 buf, __u64 iov, __u64 nseg, __u64 total)
{
	if (total == 0)
		return;
	// Reserved atomically: threads may share a socket.
	__u64 pos = __sync_fetch_and_add(&ci->pos[dir & 1], total);
	struct event_buf *b = header(KIND_DATA, key, ci);
	if (!b)
		return;
	b->hdr.dir = dir;
	b->hdr.flags = loss_flag(ci->lost[dir & 1]);
	struct copy_state *s = &b->st;
	s->iov = iov;
	s->base = iov ? 0 : buf;
	s->seg_left = iov ? 0 : total;
	s->left = total;
	s->pos = pos;
	s->nseg = nseg;
	s->fill = 0;
	s->size = 0;
	s->chunks = 0;
	bpf_loop(MAX_STEPS, copy_step, NULL, 0);
	if (s->left != 0 || s->fill != 0) {
		COUNT(truncated_bytes, s->left);
		s->size += s->left;
		s->left = 0;
		flush(b, s);
	}
	ci->lost[dir & 1] = b->hdr.flags != 0;
}

// Emits a data event for bytes that never passed through user memory.
static __always_inline void emit_unavailable(struct conn_key *key, struct conn_info *ci, __u64 total)
{
	__u64 pos = __sync_fetch_and_add(&ci->pos[DIR_EGRESS], total);
	struct event_buf *b = header(KIND_DATA, key, ci);
	if (!b)
		return;
	b->hdr.dir = DIR_EGRESS;
	b->hdr.flags = FLAG_UNAVAILABLE | loss_flag(ci->lost[DIR_EGRESS]);
	b->hdr.pos = pos;
	b->hdr.size = total;
	COUNT(unavailable_bytes, total);
	ci->lost[DIR_EGRESS] = output(b, 0) != 0;
}

static __always_inline void stash_args(struct args *a)
{
	struct args *p = bpf_task_storage_get(&stash, bpf_get_current_task_btf(), NULL,
					      BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (p)
		*p = *a;
	else
		COUNT(stash_failed, 1);
}

// Stashes the arguments of a data syscall on a tracked (or newly found)
// TCP socket. Other fds are not stashed, so their exits cost one lookup.
static __always_inline int enter_data(__u32 op, int fd, __u64 buf, __u64 count)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct conn_key key = { .tgid = id >> 32, .fd = fd };
	if (!process_wanted(key.tgid))
		return 0;
	// Files and pipes leave here, before any map lookup. This also keeps a
	// stale entry (fd reused without a close we saw) from capturing a file.
	struct socket *sock = sock_file(fd);
	if (!sock)
		return 0;
	struct conn_info *ci = bpf_map_lookup_elem(&conns, &key);
	if (!ci) {
		// Opened before the agent started, or not a TCP socket.
		struct sock *sk = tcp_sk(sock);
		if (!sk)
			return 0;
		ci = track(&key, sk, ROLE_UNKNOWN);
		if (!ci)
			return 0;
	}
	if (ci->ignored)
		return 0;
	stash_args(&(struct args){ .buf = buf, .count = count, .fd = fd, .op = op });
	return 0;
}

// Stashes the iovecs of the user_msghdr at msg. The msghdr is the caller's
// and stays put for the syscall, so it can be read at enter.
static __always_inline int enter_msg(__u32 op, int fd, __u64 msg)
{
	struct user_msghdr m = {};
	if (bpf_probe_read_user(&m, sizeof(m), (void *)msg))
		m.msg_iov = NULL; // copy fails at exit and is counted
	return enter_data(op, fd, (__u64)m.msg_iov, m.msg_iov ? m.msg_iovlen : 0);
}

// Takes the stashed arguments of this thread's syscall, if they are op's.
// The entry stays with the thread; op 0 marks it empty.
static __always_inline int unstash(__u32 op, struct args *a)
{
	struct args *p = bpf_task_storage_get(&stash, bpf_get_current_task_btf(), NULL, 0);
	if (!p || !p->op)
		return -1;
	*a = *p;
	p->op = 0;
	return a->op == op ? 0 : -1;
}

// The tracked connection of the stashed syscall, or NULL (counted as lost
// when it was closed meanwhile).
static __always_inline struct conn_info *exit_conn(__u64 id, struct args *a, long ret,
						   struct conn_key *key)
{
	key->tgid = id >> 32;
	key->fd = a->fd;
	struct conn_info *ci = bpf_map_lookup_elem(&conns, key);
	if (!ci) {
		COUNT(conn_lost, 1);
		COUNT(conn_lost_bytes, ret);
	}
	return ci;
}

static __always_inline __u8 op_dir(__u32 op)
{
	switch (op) {
	case STASH_WRITE:
	case STASH_WRITEV:
	case STASH_SENDMSG:
	case STASH_SENDMMSG:
	case STASH_SENDFILE:
		return DIR_EGRESS;
	}
	return DIR_INGRESS;
}

// Exit of a syscall whose return value is the byte count: buf is a flat
// buffer (read, write) or an iovec array (readv, writev, *msg).
static __always_inline int exit_data(__u32 op, long ret)
{
	struct args a;
	if (unstash(op, &a) || ret <= 0)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct conn_key key;
	struct conn_info *ci = exit_conn(id, &a, ret, &key);
	if (!ci)
		return 0;
	if (op == STASH_READ || op == STASH_WRITE)
		emit_flat(&key, ci, op_dir(op), a.buf, ret);
	else
		emit_data(&key, ci, op_dir(op), 0, a.buf, a.count, ret);
	return 0;
}

// Exit of recvmmsg/sendmmsg: ret is the number of messages, each with its
// iovecs and its byte count in msg_len.
static __always_inline int exit_mmsg(__u32 op, long ret)
{
	struct args a;
	if (unstash(op, &a) || ret <= 0)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct conn_key key;
	struct conn_info *ci = exit_conn(id, &a, 0, &key);
	if (!ci)
		return 0;
	struct mmsghdr *msgs = (struct mmsghdr *)a.buf;
	for (int i = 0; i < MAX_MSGS; i++) {
		if (i >= ret)
			return 0;
		struct mmsghdr m;
		if (bpf_probe_read_user(&m, sizeof(m), &msgs[i])) {
			// Without msg_len the position cannot advance: count it once.
			COUNT(copy_failed, 1);
			return 0;
		}
		emit_data(&key, ci, op_dir(op), 0, (__u64)m.msg_hdr.msg_iov, m.msg_hdr.msg_iovlen,
			  m.msg_len);
	}
	// Messages past MAX_MSGS: advance the stream by their lengths.
	__u64 rest = 0;
	for (int i = MAX_MSGS; i < MAX_MMSG_LEN; i++) {
		if (i >= ret)
			break;
		__u32 len = 0;
		bpf_probe_read_user(&len, sizeof(len), &msgs[i].msg_len);
		rest += len;
	}
	emit_data(&key, ci, op_dir(op), 0, 0, 0, rest);
	return 0;
}

static __always_inline int accepted(long ret)
{
	struct conn_key key = { .tgid = bpf_get_current_pid_tgid() >> 32, .fd = ret };
	if (ret < 0 || !process_wanted(key.tgid))
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
	if (!process_wanted(id >> 32) || !tcp_sock(fd))
		return 0;
	stash_args(&(struct args){ .fd = fd, .op = STASH_CONNECT });
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	struct args a;
	if (unstash(STASH_CONNECT, &a))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
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
	return enter_data(STASH_READ, ctx->args[0], ctx->args[1], 0);
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
	return enter_data(STASH_READ, ctx->args[0], ctx->args[1], 0);
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	return exit_data(STASH_READ, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_write")
int enter_write(struct trace_event_raw_sys_enter *ctx)
{
	return enter_data(STASH_WRITE, ctx->args[0], ctx->args[1], 0);
}

SEC("tracepoint/syscalls/sys_exit_write")
int exit_write(struct trace_event_raw_sys_exit *ctx)
{
	return exit_data(STASH_WRITE, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	return enter_data(STASH_WRITE, ctx->args[0], ctx->args[1], 0);
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int exit_sendto(struct trace_event_raw_sys_exit *ctx)
{
	return exit_data(STASH_WRITE, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_readv")
int enter_readv(struct trace_event_raw_sys_enter *ctx)
{
	return enter_data(STASH_READV, ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_readv")
int exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	return exit_data(STASH_READV, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int enter_writev(struct trace_event_raw_sys_enter *ctx)
{
	return enter_data(STASH_WRITEV, ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int exit_writev(struct trace_event_raw_sys_exit *ctx)
{
	return exit_data(STASH_WRITEV, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int enter_recvmsg(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[2] & MSG_PEEK)
		return 0;
	return enter_msg(STASH_RECVMSG, ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	return exit_data(STASH_RECVMSG, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	return enter_msg(STASH_SENDMSG, ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int exit_sendmsg(struct trace_event_raw_sys_exit *ctx)
{
	return exit_data(STASH_SENDMSG, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int enter_recvmmsg(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[3] & MSG_PEEK)
		return 0;
	return enter_data(STASH_RECVMMSG, ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int exit_recvmmsg(struct trace_event_raw_sys_exit *ctx)
{
	return exit_mmsg(STASH_RECVMMSG, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int enter_sendmmsg(struct trace_event_raw_sys_enter *ctx)
{
	return enter_data(STASH_SENDMMSG, ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int exit_sendmmsg(struct trace_event_raw_sys_exit *ctx)
{
	return exit_mmsg(STASH_SENDMMSG, ctx->ret);
}

// sendfile's bytes go from the page cache to the socket without passing
// through user memory: their count is captured, not their content.
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int enter_sendfile(struct trace_event_raw_sys_enter *ctx)
{
	return enter_data(STASH_SENDFILE, ctx->args[0], 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_sendfile64")
int exit_sendfile(struct trace_event_raw_sys_exit *ctx)
{
	struct args a;
	if (unstash(STASH_SENDFILE, &a) || ctx->ret <= 0)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct conn_key key;
	struct conn_info *ci = exit_conn(id, &a, ctx->ret, &key);
	if (ci)
		emit_unavailable(&key, ci, ctx->ret);
	return 0;
}
