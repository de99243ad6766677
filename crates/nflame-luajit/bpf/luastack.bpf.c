// SPDX-License-Identifier: MIT OR GPL-2.0
//
// nflame's Lua stack walker: a perf_event BPF program that runs when a
// sampling counter overflows (PERF_EVENT_IOC_SET_BPF on the counter's fd),
// before the kernel writes the perf sample. For a process registered in
// `lua_procs` (keyed by tgid) it finds the running LuaJIT VM's global_State,
// reads the VM state and the running lua_State, walks that Lua stack (GC64
// frame layout) and writes one record per sample to the `lua_events` ring
// buffer: tgid, tid, CLOCK_MONOTONIC time, VM state, and the raw frames
// (GCfunc address, frame link word, the function's bytecode or C address
// and header), leaf first. All interpretation
// (names, lines, frame kinds) is left to user space.
//
// Every offset comes from user space (read from the LuaJIT binary and checked
// in the live process); nothing here is specific to one LuaJIT build except
// the GC64 value and frame encodings, which user space verified too.
//
// Built by scripts/build-bpf.sh with clang; the object is committed.
// No system headers: the few kernel types and helper ids are declared here.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_RINGBUF 27

// x86-64 user registers as the kernel saves them (struct pt_regs).
struct pt_regs {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	__u64 ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

struct bpf_perf_event_data {
	struct pt_regs regs;
	__u64 sample_period;
	__u64 addr;
};

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static long (*bpf_probe_read_user)(void *dst, __u32 size, const void *src) = (void *)112;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;
static long (*bpf_ringbuf_output)(void *rb, void *data, __u64 size, __u64 flags) = (void *)130;
static void *(*bpf_get_current_task_btf)(void) = (void *)158;
static void *(*bpf_task_pt_regs)(void *task) = (void *)175;
static long (*bpf_loop)(__u32 n, void *callback, void *ctx, __u64 flags) = (void *)181;

// How far above the stack pointer the VM's C frame may be.
#define MAX_C_STACK (256ULL << 20)

// Maximum number of frames walked and recorded per sample (a power of two).
#define MAX_FRAMES 128

// GC64: a TValue's type tag is its top 17 bits, the GC pointer the low 47.
#define GCPTR_MASK ((1ULL << 47) - 1)
#define ITYPE_FUNC (-9) // ~LJ_TFUNC (~8u), as a sign-extended tag

// Per-process configuration, written by user space (LuaProcConfig in Rust).
struct lua_proc_cfg {
	__u64 g;          // global_State; 0 = not known yet (learnt from r14)
	__u64 vm_start;   // interpreter machine code [vm_start, vm_end)
	__u64 vm_end;
	__u32 g2disp;     // dispatch table - G (r14 inside the VM)
	__u32 glref;      // lua_State.glref
	__u32 l_base;     // lua_State.base
	__u32 l_stack;    // lua_State.stack
	__u32 l_maxstack; // lua_State.maxstack
	__u32 mainthref;  // global_State.mainthref
	__u32 cur_l;      // global_State.cur_L
	__u32 vmstate;    // global_State.vmstate
	__u32 jit_base;   // global_State.jit_base
	__u32 trace_arr;  // G + this holds jit_State.trace (0 = unknown)
	__u32 trace_startpt; // GCtrace.startpt
	__u32 trace_startpc; // GCtrace.startpc
	__u32 max_frames; // walk at most this many frames (<= MAX_FRAMES)
	__u32 func_pc;    // GCfunc.pc (a Lua function's bytecode)
	__u32 func_cfunc; // GCfunc.f (a C function's address)
	__u32 l_cframe;   // lua_State.cframe
};

// Header of one ring-buffer record (LuaSampleHeader in Rust); `nframes`
// frames of two u64 follow.
struct lua_sample {
	__u32 tgid;
	__u32 tid;
	__u64 time_ns;   // bpf_ktime_get_ns(): CLOCK_MONOTONIC
	__u64 g;
	__u64 l;         // the lua_State walked (G->cur_L)
	__u64 ip;        // user instruction pointer
	__u64 leaf_pc;   // interpreter PC register (rbx), when F_BASE_REG
	__u64 trace_pt;  // GCproto the running trace started in (vmstate >= 0)
	__u64 trace_pc;  // and its start PC
	__s32 vmstate;
	__u16 nframes;
	__u8 flags;
	__u8 status;
};

// A frame, with what identifies its function read now: short-lived
// closures are often freed before user space could read them.
struct lua_frame {
	__u64 func; // GCfunc address
	__u64 link; // frame link: PC of the caller (Lua frame) or size|type
	__u64 code; // GCfunc.pc (Lua function) or GCfunc.f (C function)
	__u32 hdr;  // the GCfunc's bytes 8..11: marked, gct, ffid, nupvalues
	__u32 pad;
};

struct scratch {
	struct lua_sample hdr;
	struct lua_frame frames[MAX_FRAMES];
};

// lua_sample.flags
#define F_KERNEL 1      // sample taken in kernel mode; user registers from the task
#define F_G_FROM_REG 2  // G came from r14 (the VM's dispatch register)
#define F_BASE_REG 4    // leaf frame from the interpreter's registers (rdx, rbx)
#define F_BASE_JIT 8    // leaf frame from G->jit_base (running a trace)
#define F_BOTTOM 16     // the walk reached the bottom of the Lua stack
#define F_TRUNCATED 32  // stopped at max_frames

// lua_sample.status
#define S_OK 0
#define S_NO_G 1        // no valid global_State
#define S_READ_VM 2     // could not read G or the lua_State
#define S_READ_FRAME 3  // a frame slot could not be read
#define S_BAD_FRAME 4   // a frame slot did not hold a function
#define S_BAD_LINK 5    // a frame link led outside the stack
#define S_NOT_RUNNING 6 // the thread is not running Lua (no C frame of the VM)

// lua_stats indexes
#define ST_SEEN 0
#define ST_SENT 1
#define ST_RB_FULL 2
#define ST_NO_G 3
#define ST_MAX 4

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct lua_proc_cfg);
} lua_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} lua_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} lua_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} lua_stats SEC(".maps");

static __attribute__((always_inline)) void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&lua_stats, &which);
	if (v)
		*v += 1;
}

static __attribute__((always_inline)) __u64 read_u64(__u64 addr, int *err)
{
	__u64 v = 0;
	if (bpf_probe_read_user(&v, sizeof(v), (const void *)addr))
		*err = 1;
	return v;
}

// A global_State candidate is valid when its main thread points back to it.
static __attribute__((always_inline)) int valid_g(struct lua_proc_cfg *cfg, __u64 g)
{
	int err = 0;
	if (g < 4096 || g > GCPTR_MASK)
		return 0;
	__u64 l = read_u64(g + cfg->mainthref, &err) & GCPTR_MASK;
	if (err || !l)
		return 0;
	__u64 back = read_u64(l + cfg->glref, &err) & GCPTR_MASK;
	return !err && back == g;
}

struct walk {
	__u64 base;
	__u64 stack;
	__u32 n;
	__u32 func_pc;
	__u32 func_cfunc;
	__u8 flags;
	__u8 status;
};

static long walk_frame(__u32 i, struct walk *w)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&lua_scratch, &zero);
	if (!s)
		return 1;
	// A frame needs its function and link slots above the stack's two
	// reserved slots.
	if (w->base < w->stack + 32) {
		w->flags |= F_BOTTOM;
		return 1;
	}
	__u64 slot[2];
	if (bpf_probe_read_user(slot, sizeof(slot), (const void *)(w->base - 16))) {
		w->status = S_READ_FRAME;
		return 1;
	}
	if (((__s64)slot[0] >> 47) != ITYPE_FUNC) {
		w->status = S_BAD_FRAME;
		return 1;
	}
	__u64 link = slot[1];
	__u64 func = slot[0] & GCPTR_MASK;
	__u32 hdr = 0;
	__u64 code = 0;
	if (bpf_probe_read_user(&hdr, sizeof(hdr), (const void *)(func + 8)) == 0) {
		__u8 ffid = hdr >> 16;
		// ffid 0: Lua function (its bytecode), 1: C function; else a builtin.
		if (ffid == 0)
			bpf_probe_read_user(&code, sizeof(code), (const void *)(func + w->func_pc));
		else if (ffid == 1)
			bpf_probe_read_user(&code, sizeof(code), (const void *)(func + w->func_cfunc));
	}
	struct lua_frame *fr = &s->frames[i & (MAX_FRAMES - 1)];
	fr->func = func;
	fr->link = link;
	fr->code = code & GCPTR_MASK;
	fr->hdr = hdr;
	fr->pad = 0;
	w->n = i + 1;
	__u64 delta;
	if ((link & 3) == 0) {
		// Lua frame: the link is the caller's PC, just after its call
		// instruction, whose operand A is the callee's slot.
		__u32 ins = 0;
		if (bpf_probe_read_user(&ins, sizeof(ins), (const void *)(link - 4))) {
			w->status = S_READ_FRAME;
			return 1;
		}
		delta = (2 + ((ins >> 8) & 0xff)) * 8;
	} else {
		delta = link & ~7ULL;
	}
	if (delta == 0 || delta > w->base - w->stack) {
		w->status = S_BAD_LINK;
		return 1;
	}
	w->base -= delta;
	return 0;
}

SEC("perf_event")
int lua_stack(struct bpf_perf_event_data *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	struct lua_proc_cfg *cfg = bpf_map_lookup_elem(&lua_procs, &tgid);
	if (!cfg)
		return 1; // not a LuaJIT process: keep the perf sample, nothing else
	count(ST_SEEN);
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&lua_scratch, &zero);
	if (!s)
		return 1;
	struct lua_sample *h = &s->hdr;
	h->tgid = tgid;
	h->tid = (__u32)pid_tgid;
	h->time_ns = bpf_ktime_get_ns();
	h->g = 0;
	h->l = 0;
	h->leaf_pc = 0;
	h->trace_pt = 0;
	h->trace_pc = 0;
	h->vmstate = 0;
	h->nframes = 0;
	h->flags = 0;
	h->status = S_OK;

	__u64 ip, sp, r14, rdx, rbx;
	if (ctx->regs.cs & 3) {
		ip = ctx->regs.ip;
		sp = ctx->regs.sp;
		r14 = ctx->regs.r14;
		rdx = ctx->regs.dx;
		rbx = ctx->regs.bx;
	} else {
		// In the kernel: the user registers are saved at the top of the
		// task's kernel stack.
		struct pt_regs u = {};
		h->flags |= F_KERNEL;
		bpf_probe_read_kernel(&u, sizeof(u), bpf_task_pt_regs(bpf_get_current_task_btf()));
		ip = u.ip;
		sp = u.sp;
		r14 = u.r14;
		rdx = u.dx;
		rbx = u.bx;
	}
	h->ip = ip;

	// G: the dispatch register when it holds one (always, inside the VM
	// and compiled code), else the last G seen or found for this process.
	__u64 g = 0;
	__u64 cand = r14 - cfg->g2disp;
	if (valid_g(cfg, cand)) {
		g = cand;
		h->flags |= F_G_FROM_REG;
		if (cfg->g != cand)
			cfg->g = cand;
	} else if (cfg->g && valid_g(cfg, cfg->g)) {
		g = cfg->g;
	}
	if (!g) {
		h->status = S_NO_G;
		count(ST_NO_G);
		goto out;
	}
	h->g = g;

	int err = 0;
	__s32 vmstate = 0;
	if (bpf_probe_read_user(&vmstate, sizeof(vmstate), (const void *)(g + cfg->vmstate)))
		err = 1;
	__u64 l = read_u64(g + cfg->cur_l, &err) & GCPTR_MASK;
	__u64 jit_base = read_u64(g + cfg->jit_base, &err) & GCPTR_MASK;
	if (err || !l) {
		h->status = S_READ_VM;
		goto out;
	}
	h->vmstate = vmstate;
	h->l = l;
	__u64 stack = read_u64(l + cfg->l_stack, &err) & GCPTR_MASK;
	__u64 maxstack = read_u64(l + cfg->l_maxstack, &err) & GCPTR_MASK;
	__u64 base = read_u64(l + cfg->l_base, &err) & GCPTR_MASK;
	__u64 cframe = read_u64(l + cfg->l_cframe, &err);
	if (err) {
		h->status = S_READ_VM;
		goto out;
	}
	// A thread runs Lua (or a C function Lua called, or a trace) only under
	// a C frame of the VM, on the sampled thread's own stack: above its
	// stack pointer. G->cur_L keeps pointing at a coroutine that yielded,
	// or at the main thread once lua_pcall returned, while the process runs
	// its own C code (e.g. nginx's event loop): cframe is NULL then. A VM
	// run by another thread has its cframe on another stack.
	cframe &= ~3ULL;
	if (cframe < sp || cframe - sp > MAX_C_STACK) {
		h->status = S_NOT_RUNNING;
		goto out;
	}

	if (vmstate >= 0 && jit_base > stack && jit_base <= maxstack) {
		// Running compiled code: the frame the trace was entered in (when
		// it lies in the running thread's stack).
		base = jit_base;
		h->flags |= F_BASE_JIT;
		if (cfg->trace_arr) {
			__u64 arr = read_u64(g + cfg->trace_arr, &err) & GCPTR_MASK;
			__u64 tr = err ? 0 : read_u64(arr + (__u64)vmstate * 8, &err) & GCPTR_MASK;
			if (!err && tr) {
				h->trace_pt = read_u64(tr + cfg->trace_startpt, &err) & GCPTR_MASK;
				h->trace_pc = read_u64(tr + cfg->trace_startpc, &err) & GCPTR_MASK;
			}
			err = 0;
		}
	} else if (vmstate == -1 && ip >= cfg->vm_start && ip < cfg->vm_end &&
		   rdx > stack && rdx <= maxstack && (rdx & 7) == 0) {
		// Interpreting, inside the VM: BASE and PC are live in registers
		// (L->base is only stored when the VM calls out).
		base = rdx;
		h->leaf_pc = rbx;
		h->flags |= F_BASE_REG;
	}

	struct walk w = {
		.base = base,
		.stack = stack,
		.func_pc = cfg->func_pc,
		.func_cfunc = cfg->func_cfunc,
	};
	__u32 max = cfg->max_frames;
	if (max > MAX_FRAMES || max == 0)
		max = MAX_FRAMES;
	bpf_loop(max, walk_frame, &w, 0);
	h->flags |= w.flags;
	h->status = w.status;
	if (w.n >= max && !(w.flags & F_BOTTOM))
		h->flags |= F_TRUNCATED;
	h->nframes = w.n;

out:;
	__u32 n = h->nframes;
	if (n > MAX_FRAMES)
		n = MAX_FRAMES;
	__u64 size = sizeof(struct lua_sample) + (__u64)n * sizeof(struct lua_frame);
	if (size > sizeof(struct scratch))
		size = sizeof(struct scratch);
	if (bpf_ringbuf_output(&lua_events, s, size, 0))
		count(ST_RB_FULL);
	else
		count(ST_SENT);
	return 1; // keep the perf sample
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
