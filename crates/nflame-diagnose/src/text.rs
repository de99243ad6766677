//! Plain-text rendering of [`CategoryReport`] and [`ChangeReport`]: aligned tables, the top
//! frames, and the verdict wrapped for a terminal. The CLI prints these as they are.

use std::io::{self, Write};

use crate::change::ChangeReport;
use crate::report::{pct, CategoryReport, Verdict};

const WIDTH: usize = 88;

/// A number with four significant digits, plain notation when readable
/// (`12.35`, `0.004321`, `1.235e-7`).
pub fn num(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let mag = x.abs().log10().floor() as i32;
    if !(-5..=9).contains(&mag) {
        return format!("{x:.3e}");
    }
    let decimals = (3 - mag).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn wrap(w: &mut (impl Write + ?Sized), indent: &str, text: &str) -> io::Result<()> {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > WIDTH {
            writeln!(w, "{indent}{line}")?;
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        writeln!(w, "{indent}{line}")?;
    }
    Ok(())
}

fn write_verdict(w: &mut (impl Write + ?Sized), title: &str, v: &Verdict) -> io::Result<()> {
    writeln!(w, "{title}: {}", v.kind.as_str())?;
    wrap(w, "  ", &v.summary)?;
    writeln!(w, "fix:")?;
    wrap(w, "  ", &v.fix)
}

impl CategoryReport {
    /// Writes the report as text: totals, the category table, the top frames of
    /// each non-empty category, the verdict.
    pub fn write_text<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        let m = self.measure;
        let symbol = m.unit.symbol();
        write!(
            w,
            "{}, serving path {} ({})",
            self.amount(self.total_samples),
            m.format(self.serving_samples),
            pct(if self.total_samples == 0 {
                0.0
            } else {
                self.serving_samples as f64 / self.total_samples as f64
            })
        )?;
        if let (Some(per), Some(t), Some(s)) =
            (self.per, self.total_per_unit(), self.serving_per_unit())
        {
            write!(
                w,
                "; {} units of work: {} {symbol} per unit, {} in the serving path",
                num(per),
                num(t),
                num(s)
            )?;
        }
        writeln!(w)?;
        writeln!(w)?;
        let name_w = self
            .categories
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(8)
            .max(8);
        write!(
            w,
            "{:<name_w$}  {:>10}  {:>6}  {:>7}",
            "category", symbol, "share", "serving"
        )?;
        if self.per.is_some() {
            write!(w, "  {:>10}", "per unit")?;
        }
        writeln!(w)?;
        for c in &self.categories {
            write!(
                w,
                "{:<name_w$}  {:>10}  {:>6}  {:>7}",
                c.name,
                m.format(c.samples),
                pct(c.share),
                c.serving_share.map_or("-".to_string(), pct)
            )?;
            if let Some(p) = c.per_unit {
                write!(w, "  {:>10}", num(p))?;
            }
            writeln!(w)?;
        }
        writeln!(w)?;
        writeln!(w, "top frames (share of all {})", self.noun())?;
        for c in self.categories.iter().filter(|c| c.samples > 0) {
            let frames = c
                .top_frames
                .iter()
                .map(|f| {
                    format!(
                        "{} {}",
                        nflame_profile::text::clean_text(&f.frame),
                        pct(f.share)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let indent = " ".repeat(name_w + 4);
            let mut buf = Vec::new();
            wrap(&mut buf, &indent, &frames)?;
            let text = String::from_utf8_lossy(&buf);
            let text = text.get(name_w + 4..).unwrap_or("");
            write!(w, "  {:<name_w$}  {text}", c.name)?;
        }
        writeln!(w)?;
        self.write_event_loops(w)?;
        if !self.lua_vm.is_empty() {
            writeln!(
                w,
                "LuaJIT VM (share of each process's samples with Lua frames)"
            )?;
            let proc_w = self
                .lua_vm
                .iter()
                .map(|v| v.process.len())
                .max()
                .unwrap_or(8)
                .clamp(8, 32);
            for v in &self.lua_vm {
                let states = v
                    .states
                    .iter()
                    .map(|(s, _)| format!("{s} {}", pct(v.share(s))))
                    .collect::<Vec<_>>()
                    .join(", ");
                writeln!(
                    w,
                    "  {:<proc_w$}  {:>8} samples  {states}",
                    v.process, v.samples
                )?;
            }
            writeln!(w)?;
        }
        write_verdict(w, "verdict", &self.verdict)
    }

    /// The event-loop workers' time, one line each, then a blank line
    /// (nothing without event loops).
    pub fn write_event_loops<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        if self.event_loops.is_empty() {
            return Ok(());
        }
        writeln!(
            w,
            "event loops (share of each worker's time in the profile)"
        )?;
        for e in &self.event_loops {
            let of = |x: u64| {
                if e.total == 0 {
                    0.0
                } else {
                    x as f64 / e.total as f64
                }
            };
            writeln!(
                w,
                "  {}: blocked outside its event wait {} ({}), idle in it {}, preempted {}, on the CPU {}",
                nflame_profile::text::clean_text(&e.process),
                pct(of(e.blocking)),
                self.amount(e.blocking),
                pct(of(e.idle)),
                pct(of(e.preempted)),
                if e.on_cpu > 0 {
                    pct(of(e.on_cpu))
                } else {
                    "-".to_string()
                }
            )?;
        }
        writeln!(w)
    }
}

impl ChangeReport {
    /// Writes the comparison as text: the per-category table (samples, shares, the
    /// change in percentage points, and samples per unit when both sides have
    /// units of work), both reports' verdicts in one line each, the verdict on
    /// what changed.
    pub fn write_text<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        let name_w = self
            .changes
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(8)
            .max(8);
        let per = self.changes.iter().any(|c| c.before_per_unit.is_some());
        // A profile of time says its unit in the header; samples never did.
        let column = |side: &str, r: &CategoryReport| match r.measure.unit {
            nflame_profile::Unit::Samples => side.to_string(),
            unit => format!("{side} {}", unit.symbol()),
        };
        write!(
            w,
            "{:<name_w$}  {:>10}  {:>6}  {:>10}  {:>6}  {:>8}",
            "category",
            column("before", &self.before),
            "share",
            column("after", &self.after),
            "share",
            "change"
        )?;
        if per {
            write!(
                w,
                "  {:>10}  {:>10}  {:>7}",
                "per unit", "per unit", "change"
            )?;
        }
        writeln!(w)?;
        for c in &self.changes {
            write!(
                w,
                "{:<name_w$}  {:>10}  {:>6}  {:>10}  {:>6}  {:>8}",
                c.name,
                self.before.measure.format(c.before_samples),
                pct(c.before_share),
                self.after.measure.format(c.after_samples),
                pct(c.after_share),
                format!("{:+.1}pp", 100.0 * c.share_delta)
            )?;
            if let (Some(b), Some(a)) = (c.before_per_unit, c.after_per_unit) {
                let change = if b > 0.0 {
                    format!("{:+.0}%", 100.0 * (a - b) / b)
                } else {
                    "-".to_string()
                };
                write!(w, "  {:>10}  {:>10}  {:>7}", num(b), num(a), change)?;
            }
            writeln!(w)?;
        }
        write!(
            w,
            "{:<name_w$}  {:>10}  {:>6}  {:>10}  {:>6}",
            "total",
            self.before.measure.format(self.before.total_samples),
            "",
            self.after.measure.format(self.after.total_samples),
            ""
        )?;
        writeln!(w)?;
        writeln!(w)?;
        writeln!(w, "before: {}", self.before.verdict.kind.as_str())?;
        writeln!(w, "after:  {}", self.after.verdict.kind.as_str())?;
        write_verdict(w, "verdict", &self.verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CategoryReportOptions;
    use crate::rules::Rules;
    use nflame_profile::Profile;

    /// The VM's own view, per process, from the Lua frames (text and JSON).
    #[test]
    fn lua_vm_view() {
        let p = Profile::from_stacks([
            ("nginx;ngx_http_lua_run_thread;=content_by_lua(nginx.conf:20)_[l];f@/a.lua:3_[lj]", 60),
            ("nginx;ngx_http_lua_run_thread;=content_by_lua(nginx.conf:20)_[l];f@/a.lua:3_[l]", 20),
            ("nginx;ngx_http_lua_run_thread;=content_by_lua(nginx.conf:20)_[l];ngx_http_lua_ngx_say;writev", 10),
            ("nginx;ngx_http_lua_run_thread;=content_by_lua(nginx.conf:20)_[l];[LuaJIT GC]_[l]", 10),
            ("[container web];luajit;main;@/x.lua_[l]", 5),
            ("nginx;ngx_epoll_process_events", 100),
        ]);
        let r =
            CategoryReport::new(&p, &Rules::default(), &CategoryReportOptions::default()).unwrap();
        assert_eq!(r.lua_vm.len(), 2);
        let v = &r.lua_vm[0];
        assert_eq!((v.process.as_str(), v.samples), ("nginx", 100));
        assert_eq!(
            v.states,
            vec![
                ("interpreted".to_string(), 20),
                ("compiled".to_string(), 60),
                ("C".to_string(), 10),
                ("GC".to_string(), 10)
            ]
        );
        assert_eq!(r.lua_vm[1].process, "luajit");
        let mut out = Vec::new();
        r.write_text(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("  nginx          100 samples  interpreted 20.0%, compiled 60.0%, C 10.0%, GC 10.0%"),
            "{out}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["lua_vm"][0]["states"]["compiled"]["samples"], 60);
        assert_eq!(json["lua_vm"][0]["states"]["compiled"]["share"], 0.6);
        // The same from a diff's tree, column by column.
        let empty = Profile::new();
        let tree = nflame_profile::tree::StackTree::of_two(&p, &empty);
        let [a, b] = CategoryReport::pair_from_tree(
            &tree,
            p.measure(),
            &Rules::default(),
            [&CategoryReportOptions::default(); 2],
        )
        .unwrap();
        assert_eq!(a.lua_vm, r.lua_vm);
        assert!(b.lua_vm.is_empty());
        // Without Lua frames, JSON has no lua_vm at all.
        assert!(!serde_json::to_string(&b).unwrap().contains("lua_vm"));
    }

    #[test]
    fn numbers() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(12.3456), "12.35");
        assert_eq!(num(0.004321), "0.004321");
        assert_eq!(num(10.0), "10");
        assert_eq!(num(123456.0), "123456");
        assert_eq!(num(1.0e-7), "1.000e-7");
    }

    #[test]
    fn wraps_words() {
        let mut out = Vec::new();
        let text = "word ".repeat(40);
        wrap(&mut out, "  ", &text).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.lines().all(|l| l.len() <= WIDTH && l.starts_with("  ")));
        assert_eq!(out.split_whitespace().count(), 40);
    }

    fn sample_report(per: Option<f64>) -> CategoryReport {
        let p = Profile::from_stacks([
            ("nginx;ngx_http_lua_content_handler", 600),
            ("docker-proxy;[docker-proxy];__x64_sys_splice_[k]", 400),
        ]);
        let opts = CategoryReportOptions {
            per,
            ..CategoryReportOptions::default()
        };
        CategoryReport::new(&p, &Rules::default(), &opts).unwrap()
    }

    #[test]
    fn report_table_is_aligned() {
        let mut out = Vec::new();
        sample_report(Some(10.0)).write_text(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("1000 samples, serving path 1000 (100.0%); 10 units of work"));
        let table: Vec<&str> = out.lines().skip(2).take(8).collect();
        assert!(table[0].starts_with("category"));
        let width = table[0].len();
        assert!(table.iter().all(|l| l.len() == width), "{out}");
        assert!(
            out.contains("userland-proxy            400   40.0%    40.0%          40\n"),
            "{out}"
        );
        assert!(out.contains("verdict: userland-proxy"));
        assert!(out.contains("fix:\n  Take the userland proxy out"));
        assert!(
            out.contains("\n  app                ngx_http_lua_content_handler 60.0%\n"),
            "{out}"
        );
    }

    #[test]
    fn time_reports_say_microseconds() {
        let mut p = Profile::with_unit(nflame_profile::Unit::Microseconds);
        p.add("nginx;ngx_http_lua_content_handler", 600_000);
        p.add("docker-proxy;[docker-proxy];__x64_sys_splice_[k]", 400_000);
        let opts = CategoryReportOptions {
            per: Some(1000.0),
            ..CategoryReportOptions::default()
        };
        let r = CategoryReport::new(&p, &Rules::default(), &opts).unwrap();
        let mut out = Vec::new();
        r.write_text(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with(
                "1000000 µs, serving path 1000000 (100.0%); 1000 units of work: 1000 µs per unit"
            ),
            "{out}"
        );
        assert!(out.contains("        µs   share  serving"), "{out}");
        assert!(out.contains("top frames (share of all time)"), "{out}");
        let d = ChangeReport::new(r.clone(), r);
        let mut out = Vec::new();
        d.write_text(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("userland-proxy         400000   40.0%      400000"),
            "{out}"
        );
        assert!(out.contains(" before µs   share    after µs"), "{out}");
        assert!(
            d.verdict
                .summary
                .contains("Serving-path time (µs) per unit of work went from 1000 to 1000"),
            "{}",
            d.verdict.summary
        );
    }

    #[test]
    fn diff_table_is_aligned() {
        let d = ChangeReport::new(sample_report(Some(10.0)), sample_report(Some(20.0)));
        let mut out = Vec::new();
        d.write_text(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let table: Vec<&str> = out.lines().take(8).collect();
        let width = table[0].len();
        assert!(table.iter().all(|l| l.len() == width), "{out}");
        assert!(out.contains("-50%"), "{out}");
        assert!(
            out.contains("verdict: userland-proxy\n  Not fixed"),
            "{out}"
        );
    }
}
