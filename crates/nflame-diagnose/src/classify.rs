//! Applying [`Rules`] to stacks: one category per stack, with the frame that shows
//! why.
//!
//! This module owns the precedence between rules; it knows nothing of verdicts or
//! output formats ([`crate::report`]). A stack is `root;…;leaf`, the root being the
//! process name (or a bracketed annotation such as `[container web]` followed by the
//! process name), kernel frames ending in `_[k]`.
//!
//! # Precedence
//!
//! 1. `owns-process`: the first such rule (in file order) matching a process frame
//!    claims the whole stack. This is how a relay's own kernel work (the TCP sends of
//!    docker-proxy, the bridge it crosses) counts as the relay's cost: without the
//!    relay that work would not exist.
//! 2. `owns-frame`: the innermost frame matching such a rule claims the whole stack.
//! 3. `frame`: walking from the leaf towards the root, the first frame matching a
//!    `frame` rule (or, for a frame read from a Lua stack, a `lua-frame` rule)
//!    decides (the innermost subsystem owns the sample: `tcp_sendmsg` calling into
//!    the bridge is bridge cost, the bridge handing a packet up to `ip_rcv` is
//!    TCP/IP cost; a Lua function's own time is the application's).
//! 4. `frame-weak`: if no `frame` rule matched, the innermost `frame-weak` match.
//! 5. `process`: the first such rule matching a process frame.
//! 6. otherwise `other`.
//!
//! Within one frame, the first rule of the file wins.

use nflame_profile::tree::{StackTree, TreeVisitor};
use regex::Regex;
use rustc_hash::FxHashMap;

use crate::rules::{RuleKind, Rules};

/// Kernel frames inside the system calls a relay copies bytes with (splice, read,
/// write and friends). Used as evidence in verdicts, independent of the rules.
const RELAY_SYSCALLS: &str = r"^_*(x64_|ia32_|arm64_|do_|se_)*sys_(splice|read|write|readv|writev|recvfrom|sendto|recvmsg|sendmsg|sendfile|sendfile64|copy_file_range|tee|vmsplice)$|^(do_splice|splice_to_socket|splice_file_to_pipe|ksys_read|ksys_write|vfs_read|vfs_write)$";

/// What decided a stack's category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// A rule of this kind.
    Rule(RuleKind),
    /// No rule matched: the stack is `other`.
    Fallback,
}

/// The category of one stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification<'s> {
    /// Index into [`Rules::categories`].
    pub category: usize,
    /// The frame that shows why, without its annotation suffix: the deciding frame
    /// for `frame` rules, otherwise the innermost named frame (the stack's leaf,
    /// skipping `[unknown]`).
    pub frame: &'s str,
    /// The process frame (the last of the process frames), without annotation.
    pub process: &'s str,
    /// What decided.
    pub decision: Decision,
    /// Whether a frame of the stack is a relay system call (see the crate docs).
    pub in_relay_syscall: bool,
}

/// The classification of a stack of a [`StackTree`], with frame ids for names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeClass {
    /// Index into [`Rules::categories`].
    pub category: usize,
    /// The frame that shows why (see [`Classification::frame`]): a frame id, whose
    /// name is shown without its annotation, or [`UNKNOWN_FRAME`].
    pub frame: u32,
    /// The process frame's id (see [`Classification::process`]).
    pub process: u32,
    /// What decided.
    pub decision: Decision,
    /// Whether a frame of the stack is a relay system call.
    pub in_relay_syscall: bool,
}

/// [`TreeClass::frame`] of a stack whose frames are all `[unknown]`.
pub const UNKNOWN_FRAME: u32 = u32::MAX;

/// What the frames of a prefix (root first) have decided so far; extended one
/// frame at a time, it gives what [`Classifier::classify`] computes.
#[derive(Debug, Clone, Copy)]
struct PathState {
    relay: bool,
    /// The innermost `owns-frame` match.
    owner: Option<usize>,
    /// The innermost `frame` match and its frame.
    strong: Option<(usize, u32)>,
    /// The innermost `frame-weak` match and its frame.
    weak: Option<(usize, u32)>,
    /// The innermost frame that is not `[unknown]`.
    named: u32,
    /// Whether the process frame (the first frame that is not a role
    /// annotation) has been seen: later frames are not process frames.
    process_done: bool,
    /// The last process frame so far.
    process: u32,
    /// The first `owns-process` match among the process frames.
    owns_process: Option<usize>,
    /// The first `process` match among the process frames.
    process_fallback: Option<usize>,
}

impl Default for PathState {
    fn default() -> PathState {
        PathState {
            relay: false,
            owner: None,
            strong: None,
            weak: None,
            named: UNKNOWN_FRAME,
            process_done: false,
            process: UNKNOWN_FRAME,
            owns_process: None,
            process_fallback: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct FrameMatch {
    owns: Option<usize>,
    strong: Option<usize>,
    weak: Option<usize>,
    relay: bool,
}

/// Classifies stacks with a rule set, caching per distinct frame text.
#[derive(Debug)]
pub struct Classifier<'r> {
    rules: &'r Rules,
    relay: Regex,
    frames: FxHashMap<Box<str>, FrameMatch>,
    /// Per process frame: (owns-process, process) categories.
    processes: FxHashMap<Box<str>, (Option<usize>, Option<usize>)>,
}

/// A frame name without the collapser's annotation (`_[k]`, `_[j]`, `_[i]`,
/// `_[w]`) or the Lua marker (`_[l]`, `_[lj]`).
pub fn strip_annotation(frame: &str) -> &str {
    if frame.len() > 5 {
        if let Some(name) = frame.strip_suffix(nflame_profile::lua::LUA_COMPILED_SUFFIX) {
            return name;
        }
    }
    let b = frame.as_bytes();
    if b.len() > 4 && b[b.len() - 4..b.len() - 2] == *b"_[" && b[b.len() - 1] == b']' {
        &frame[..frame.len() - 4]
    } else {
        frame
    }
}

/// Whether `frame` is an annotation that precedes the process frame: bracketed,
/// not `[unknown]`.
pub(crate) fn is_role_annotation(frame: &str) -> bool {
    frame.len() > 2 && frame.starts_with('[') && frame.ends_with(']') && frame != "[unknown]"
}

impl<'r> Classifier<'r> {
    /// A classifier for `rules`.
    pub fn new(rules: &'r Rules) -> Classifier<'r> {
        Classifier {
            rules,
            relay: Regex::new(RELAY_SYSCALLS).expect("valid relay pattern"),
            frames: FxHashMap::default(),
            processes: FxHashMap::default(),
        }
    }

    /// The rules in use.
    pub fn rules(&self) -> &'r Rules {
        self.rules
    }

    fn frame_match(&mut self, frame: &str) -> FrameMatch {
        if let Some(m) = self.frames.get(frame) {
            return *m;
        }
        let m = self.match_frame(frame);
        self.frames.insert(frame.into(), m);
        m
    }

    fn match_frame(&self, frame: &str) -> FrameMatch {
        let name = strip_annotation(frame);
        let lua = nflame_profile::lua::is_lua_frame(frame);
        FrameMatch {
            owns: self.rules.first_match(RuleKind::OwnsFrame, name),
            strong: self.rules.first_match(RuleKind::Frame, name).or_else(|| {
                lua.then(|| self.rules.first_match(RuleKind::LuaFrame, name))
                    .flatten()
            }),
            weak: self.rules.first_match(RuleKind::FrameWeak, name),
            relay: self.relay.is_match(name),
        }
    }

    fn process_match(&mut self, frame: &str) -> (Option<usize>, Option<usize>) {
        if let Some(m) = self.processes.get(frame) {
            return *m;
        }
        let m = self.match_process(frame);
        self.processes.insert(frame.into(), m);
        m
    }

    fn match_process(&self, frame: &str) -> (Option<usize>, Option<usize>) {
        let name = strip_annotation(frame);
        (
            self.rules.first_match(RuleKind::OwnsProcess, name),
            self.rules.first_match(RuleKind::Process, name),
        )
    }

    /// Classifies every stack of `tree`, each exactly as [`Classifier::classify`]
    /// would, indexed like [`StackTree::stacks`]. The frames of a shared prefix
    /// are looked at once for all the stacks under it, not once per stack.
    pub fn classify_tree(&self, tree: &StackTree<'_>) -> Vec<TreeClass> {
        let placeholder = TreeClass {
            category: self.rules.other_index(),
            frame: UNKNOWN_FRAME,
            process: UNKNOWN_FRAME,
            decision: Decision::Fallback,
            in_relay_syscall: false,
        };
        let mut classes = vec![placeholder; tree.stacks().len()];
        self.classify_tree_each(tree, |i, c| classes[i] = c);
        classes
    }

    /// [`Classifier::classify_tree`] handing each stack's class (with the
    /// stack's index) to `each` as it is found, keeping none.
    pub fn classify_tree_each(&self, tree: &StackTree<'_>, each: impl FnMut(usize, TreeClass)) {
        let frames = tree.frames();
        // Every distinct frame against every rule: the costly part when
        // frames are many, done in parallel.
        let matches: Vec<FrameMatch> = {
            use rayon::prelude::*;
            frames.par_iter().map(|f| self.match_frame(f)).collect()
        };
        let mut processes: Vec<Option<(Option<usize>, Option<usize>)>> = vec![None; frames.len()];
        let extend = |s: &PathState, frame: u32| -> PathState {
            let f = frame as usize;
            let m = matches[f];
            let mut n = *s;
            n.relay |= m.relay;
            if m.owns.is_some() {
                n.owner = m.owns;
            }
            if let Some(c) = m.strong {
                n.strong = Some((c, frame));
            }
            if let Some(c) = m.weak {
                n.weak = Some((c, frame));
            }
            if frames[f] != "[unknown]" {
                n.named = frame;
            }
            if !n.process_done {
                let (owns, fallback) =
                    *processes[f].get_or_insert_with(|| self.match_process(frames[f]));
                n.owns_process = n.owns_process.or(owns);
                n.process_fallback = n.process_fallback.or(fallback);
                n.process = frame;
                n.process_done = !is_role_annotation(frames[f]);
            }
            n
        };
        let other = self.rules.other_index();
        let decide = |s: &PathState| {
            let (category, frame, decision) = if let Some(c) = s.owns_process {
                (c, s.named, Decision::Rule(RuleKind::OwnsProcess))
            } else if let Some(c) = s.owner {
                (c, s.named, Decision::Rule(RuleKind::OwnsFrame))
            } else if let Some((c, f)) = s.strong {
                (c, f, Decision::Rule(RuleKind::Frame))
            } else if let Some((c, f)) = s.weak {
                (c, f, Decision::Rule(RuleKind::FrameWeak))
            } else if let Some(c) = s.process_fallback {
                (c, s.named, Decision::Rule(RuleKind::Process))
            } else {
                (other, s.named, Decision::Fallback)
            };
            TreeClass {
                category,
                frame,
                process: s.process,
                decision,
                in_relay_syscall: s.relay,
            }
        };
        // The states of the path's prefixes only (see StackTree::walk): memory
        // for the depth of the stacks, not for every prefix.
        struct Walk<'t, 'a, E, D, S> {
            tree: &'t StackTree<'a>,
            extend: E,
            decide: D,
            path: Vec<PathState>,
            each: S,
        }
        impl<E, D, S> TreeVisitor for Walk<'_, '_, E, D, S>
        where
            E: FnMut(&PathState, u32) -> PathState,
            D: Fn(&PathState) -> TreeClass,
            S: FnMut(usize, TreeClass),
        {
            fn enter(&mut self, node: u32) {
                let frame = self.tree.nodes()[node as usize].frame;
                let top = self.path.last().copied().unwrap_or_default();
                let s = (self.extend)(&top, frame);
                self.path.push(s);
            }
            fn leave(&mut self, _node: u32) {
                self.path.pop();
            }
            fn stack(&mut self, index: usize) {
                let leaf = self.tree.stacks()[index].leaf;
                let top = self.path.last().copied().unwrap_or_default();
                let s = (self.extend)(&top, leaf);
                (self.each)(index, (self.decide)(&s));
            }
        }
        let mut walk = Walk {
            tree,
            extend,
            decide,
            path: Vec::new(),
            each,
        };
        tree.walk(&mut walk);
    }

    /// Classifies one stack (`root;…;leaf`).
    pub fn classify<'s>(&mut self, stack: &'s str) -> Classification<'s> {
        let frames: Vec<&'s str> = stack.split(';').collect();

        // Process frames: leading role annotations and the frame after them.
        let mut nproc = 1;
        while nproc < frames.len() && is_role_annotation(frames[nproc - 1]) {
            nproc += 1;
        }
        let process = strip_annotation(frames[nproc - 1]);
        let leaf = frames
            .iter()
            .rev()
            .copied()
            .find(|f| *f != "[unknown]")
            .map_or("[unknown]", strip_annotation);

        let mut relay = false;
        let mut owner: Option<usize> = None;
        let mut strong: Option<(usize, &'s str)> = None;
        let mut weak: Option<(usize, &'s str)> = None;
        for &f in frames.iter().rev() {
            let m = self.frame_match(f);
            relay |= m.relay;
            if owner.is_none() {
                owner = m.owns;
            }
            if strong.is_none() {
                if let Some(c) = m.strong {
                    strong = Some((c, strip_annotation(f)));
                }
            }
            if weak.is_none() {
                if let Some(c) = m.weak {
                    weak = Some((c, strip_annotation(f)));
                }
            }
        }
        let mut process_fallback = None;
        for &p in &frames[..nproc] {
            let (owns, fallback) = self.process_match(p);
            if let Some(c) = owns {
                return Classification {
                    category: c,
                    frame: leaf,
                    process,
                    decision: Decision::Rule(RuleKind::OwnsProcess),
                    in_relay_syscall: relay,
                };
            }
            if process_fallback.is_none() {
                process_fallback = fallback;
            }
        }
        let (category, frame, decision) = if let Some(c) = owner {
            (c, leaf, Decision::Rule(RuleKind::OwnsFrame))
        } else if let Some((c, f)) = strong {
            (c, f, Decision::Rule(RuleKind::Frame))
        } else if let Some((c, f)) = weak {
            (c, f, Decision::Rule(RuleKind::FrameWeak))
        } else if let Some(c) = process_fallback {
            (c, leaf, Decision::Rule(RuleKind::Process))
        } else {
            (self.rules.other_index(), leaf, Decision::Fallback)
        };
        Classification {
            category,
            frame,
            process,
            decision,
            in_relay_syscall: relay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(rules: &Rules, stack: &str) -> (String, String) {
        let mut c = Classifier::new(rules);
        let r = c.classify(stack);
        (rules.categories()[r.category].clone(), r.frame.to_string())
    }

    fn check(rules: &Rules, stack: &str, want_cat: &str, want_frame: &str) {
        let (c, f) = cat(rules, stack);
        assert_eq!((c.as_str(), f.as_str()), (want_cat, want_frame), "{stack}");
    }

    /// Lua frames are the application, in any process; what the Lua code
    /// called into keeps its own category.
    #[test]
    fn lua_frames_are_the_application() {
        let r = Rules::default();
        let lua = "myhost;main;lua_pcall;@/srv/main.lua_[l];work@/srv/a.lua:3";
        check(&r, &format!("{lua}_[l]"), "app", "work@/srv/a.lua:3");
        check(
            &r,
            &format!("{lua}_[lj];[libluajit-5.1.so.2.1.0]"),
            "app",
            "work@/srv/a.lua:3",
        );
        check(
            &r,
            &format!("{lua}_[l];[LuaJIT GC]_[l]"),
            "app",
            "[LuaJIT GC]",
        );
        check(
            &r,
            &format!("{lua}_[l];send;tcp_sendmsg_[k]"),
            "tcp-ip",
            "tcp_sendmsg",
        );
        // Without the marker the same name is nobody's.
        check(
            &r,
            "myhost;main;work@/srv/a.lua:3",
            "other",
            "work@/srv/a.lua:3",
        );
    }

    #[test]
    fn strips_annotations() {
        assert_eq!(strip_annotation("tcp_sendmsg_[k]"), "tcp_sendmsg");
        assert_eq!(strip_annotation("lj_vm_[j]"), "lj_vm");
        assert_eq!(strip_annotation("f@/a.lua:3_[lj]"), "f@/a.lua:3");
        assert_eq!(strip_annotation("string.format_[l]"), "string.format");
        assert_eq!(strip_annotation("foo"), "foo");
        assert_eq!(strip_annotation("_[k]"), "_[k]");
        assert_eq!(strip_annotation("[docker-proxy]"), "[docker-proxy]");
    }

    #[test]
    fn default_rules_classify_the_container_paths() {
        let r = Rules::default();
        // The relay owns its kernel work, bridge frames included.
        check(
            &r,
            "docker-proxy;[docker-proxy];entry_SYSCALL_64_[k];__x64_sys_splice_[k];do_splice_[k];\
             tcp_sendmsg_[k];__dev_queue_xmit_[k];br_dev_xmit_[k];veth_xmit_[k]",
            "userland-proxy",
            "veth_xmit",
        );
        // Stripped Go frames: still the relay.
        check(
            &r,
            "docker-proxy;[unknown];[unknown]",
            "userland-proxy",
            "docker-proxy",
        );
        // Named Go frames under an unexpected root.
        check(
            &r,
            "[container x];proxy;main.(*TCPProxy).clientLoop.func1;io.Copy;tcp_sendmsg_[k]",
            "userland-proxy",
            "tcp_sendmsg",
        );
        check(
            &r,
            "[docker-proxy :8080];docker-proxy;runtime.futex",
            "userland-proxy",
            "runtime.futex",
        );
        check(
            &r,
            "socat;read;tcp_recvmsg_[k]",
            "userland-proxy",
            "tcp_recvmsg",
        );
        // In the served process, the innermost subsystem decides.
        check(
            &r,
            "nginx;ngx_http_lua_content_handler;__GI___writev;do_writev_[k];sock_write_iter_[k];\
             tcp_sendmsg_[k];ip_finish_output2_[k];__dev_queue_xmit_[k];br_dev_xmit_[k];\
             br_forward_[k];__dev_queue_xmit_[k];veth_xmit_[k];__dev_forward_skb_[k];skb_scrub_packet_[k]",
            "bridge",
            "__dev_forward_skb",
        );
        check(
            &r,
            "wrk;read;tcp_recvmsg_[k];__local_bh_enable_ip_[k];net_rx_action_[k];process_backlog_[k];\
             __netif_receive_skb_[k];br_handle_frame_[k];br_nf_pre_routing_[k];nf_hook_slow_[k];\
             nf_conntrack_in_[k];__nf_conntrack_find_get_[k]",
            "netfilter",
            "__nf_conntrack_find_get",
        );
        // The bridge hands the packet to IP: TCP work, not bridge work.
        check(
            &r,
            "wrk;process_backlog_[k];br_handle_frame_[k];br_pass_frame_up_[k];netif_receive_skb_[k];\
             ip_rcv_[k];tcp_v4_rcv_[k];kfree_skb_[k]",
            "tcp-ip",
            "tcp_v4_rcv",
        );
        // A weak helper decides only without a strong frame.
        check(
            &r,
            "wrk;kfree_skb_[k];_raw_spin_lock_[k]",
            "tcp-ip",
            "kfree_skb",
        );
        check(
            &r,
            "nginx;ngx_process_events_and_timers;epoll_wait;do_epoll_wait_[k]",
            "app",
            "ngx_process_events_and_timers",
        );
        check(
            &r,
            "nginx;[libluajit-5.1.so.2.1.0]",
            "app",
            "[libluajit-5.1.so.2.1.0]",
        );
        check(&r, "nginx-1234;[unknown];[unknown]", "app", "nginx-1234");
        check(
            &r,
            "[container web];openresty;lj_str_new",
            "app",
            "lj_str_new",
        );
        check(
            &r,
            "dockerd;runtime.mallocgc;tcp_sendmsg_[k]",
            "container-runtime",
            "tcp_sendmsg",
        );
        check(&r, "containerd-shim;x", "container-runtime", "x");
        check(&r, "runc:[2:INIT];x", "container-runtime", "x");
        check(&r, "gzip;[gzip]", "other", "[gzip]");
        check(
            &r,
            "swapper;do_idle_[k];default_idle_[k]",
            "other",
            "default_idle",
        );
        // Look-alikes that must not match.
        check(
            &r,
            "kworker;ct_kernel_enter_[k];_raw_spin_lock_[k]",
            "other",
            "_raw_spin_lock",
        );
        check(&r, "node_exporter;x", "other", "x");
        check(&r, "cc1;rt_mutex_lock_[k]", "other", "rt_mutex_lock");
    }

    #[test]
    fn relay_syscalls_are_flagged() {
        let r = Rules::default();
        let mut c = Classifier::new(&r);
        assert!(
            c.classify("docker-proxy;__x64_sys_splice_[k];do_splice_[k]")
                .in_relay_syscall
        );
        assert!(
            c.classify("socat;ksys_read_[k];tcp_recvmsg_[k]")
                .in_relay_syscall
        );
        assert!(!c.classify("docker-proxy;runtime.futex").in_relay_syscall);
    }

    #[test]
    fn precedence_between_kinds() {
        let rules = Rules::parse(
            "t",
            "a owns-frame ^own$\nb frame ^strong$\nc frame-weak ^weak$\nd process ^p$\ne owns-process ^q$\n",
        )
        .unwrap();
        let name = |s: &str| cat(&rules, s).0;
        assert_eq!(name("p;weak;strong;own"), "a");
        assert_eq!(name("p;strong;weak"), "b");
        assert_eq!(name("p;x;weak"), "c");
        assert_eq!(name("p;x"), "d");
        assert_eq!(name("q;own;strong"), "e");
        assert_eq!(name("z;x"), "other");
        // Innermost strong frame wins over an outer one.
        let rules = Rules::parse("t", "a frame ^outer$\nb frame ^inner$\n").unwrap();
        assert_eq!(cat(&rules, "p;outer;inner;leaf").0, "b");
    }

    #[test]
    fn role_annotations_expose_the_process() {
        let rules = Rules::parse("t", "app process ^nginx$\n").unwrap();
        let mut c = Classifier::new(&rules);
        let r = c.classify("[container web];[pod x];nginx;f");
        assert_eq!(r.category, 4);
        assert_eq!(r.process, "nginx");
        // `[unknown]` is not an annotation: the root alone is the process.
        let r = c.classify("[unknown];nginx");
        assert_eq!(r.category, rules.other_index());
    }

    #[test]
    fn tree_classification_is_stack_classification() {
        let stacks = [
            "docker-proxy;[docker-proxy];entry_SYSCALL_64_[k];__x64_sys_splice_[k];do_splice_[k];tcp_sendmsg_[k];veth_xmit_[k]",
            "docker-proxy;[unknown];[unknown]",
            "docker-proxy;[unknown]",
            "[container x];proxy;main.(*TCPProxy).clientLoop.func1;io.Copy;tcp_sendmsg_[k]",
            "[container x];proxy;main.(*TCPProxy).clientLoop.func1",
            "[docker-proxy :8080];docker-proxy;runtime.futex",
            "[container web];[pod x];nginx;f",
            "[container web];[pod x]",
            "[container web]",
            "[unknown];nginx",
            "[unknown]",
            "[unknown];[unknown]",
            "socat;read;tcp_recvmsg_[k]",
            "nginx;ngx_http_lua_content_handler;__GI___writev;tcp_sendmsg_[k];br_dev_xmit_[k];__dev_forward_skb_[k]",
            "nginx;ngx_http_lua_content_handler;__GI___writev;tcp_sendmsg_[k]",
            "nginx;ngx_http_lua_content_handler",
            "wrk;kfree_skb_[k];_raw_spin_lock_[k]",
            "wrk;kfree_skb_[k];[unknown]",
            "wrk;process_backlog_[k];br_handle_frame_[k];br_pass_frame_up_[k];ip_rcv_[k];tcp_v4_rcv_[k]",
            "dockerd;runtime.mallocgc;tcp_sendmsg_[k]",
            "runc:[2:INIT];x",
            "gzip;[gzip]",
            "swapper;do_idle_[k];default_idle_[k]",
            "p;weak;strong;own",
            "q;own;strong",
            "p;x;weak",
        ];
        let custom = Rules::parse(
            "t",
            "a owns-frame ^own$\nb frame ^strong$\nc frame-weak ^weak$\nd process ^p$\ne owns-process ^q$\n",
        )
        .unwrap();
        for rules in [Rules::default(), custom] {
            let mut tree = StackTree::new();
            for s in stacks {
                tree.add(s, 0, 1);
            }
            let classes = Classifier::new(&rules).classify_tree(&tree);
            let mut c = Classifier::new(&rules);
            for (stack, t) in tree.stacks().iter().zip(&classes) {
                let want = c.classify(stack.text);
                let name = |id: u32| {
                    if id == UNKNOWN_FRAME {
                        "[unknown]"
                    } else {
                        strip_annotation(tree.frame_name(id))
                    }
                };
                let got = Classification {
                    category: t.category,
                    frame: name(t.frame),
                    process: name(t.process),
                    decision: t.decision,
                    in_relay_syscall: t.in_relay_syscall,
                };
                assert_eq!(got, want, "{}", stack.text);
            }
        }
    }
}
