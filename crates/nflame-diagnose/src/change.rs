//! [`ChangeReport`]: two [`CategoryReport`]s side by side, the change of every category and a
//! verdict on what changed.
//!
//! The reports are built independently (each with its own units of work), so a
//! 30-second recording can be compared with a 10-second one: shares compare
//! directly, and with units of work on both sides so do samples per unit.
//!
//! The verdict's `kind` names the container-network cost the change is about:
//! the cost `before` had and `after` lost (the change fixed it), the cost `after`
//! gained (a regression), or the cost both share (not fixed). `none` when neither
//! report has one. `blocking` (profiles of time) is about an event-loop worker
//! asleep outside its event wait, the same way.

use nflame_profile::unit::Amount;
use nflame_profile::Unit;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::report::{noun, pct, CategoryReport, Verdict, VerdictKind, FIX_NONE};

/// How one category changed (serialized by the [`ChangeReport`], with each
/// side's counts in its unit).
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryChange {
    /// The category.
    pub name: String,
    /// Samples before (stored counts of the before report's measure).
    pub before_samples: u64,
    /// Samples after (stored counts of the after report's measure).
    pub after_samples: u64,
    /// Share of all samples before (0..1).
    pub before_share: f64,
    /// Share of all samples after (0..1).
    pub after_share: f64,
    /// `after_share - before_share`.
    pub share_delta: f64,
    /// Samples per unit before, when both reports have units of work.
    pub before_per_unit: Option<f64>,
    /// Samples per unit after, when both reports have units of work.
    pub after_per_unit: Option<f64>,
}

/// The JSON of a [`CategoryChange`].
#[derive(Serialize)]
struct ChangeJson<'a> {
    name: &'a str,
    before_samples: Amount,
    after_samples: Amount,
    before_share: f64,
    after_share: f64,
    share_delta: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    before_per_unit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after_per_unit: Option<f64>,
}

/// Two reports and what changed. Serializes as
/// `{"before": <report>, "after": <report>, "changes": [...], "verdict": {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeReport {
    /// The first profile's report.
    pub before: CategoryReport,
    /// The second profile's report.
    pub after: CategoryReport,
    /// Every category of either report, in report order.
    pub changes: Vec<CategoryChange>,
    /// What changed, in plain language.
    pub verdict: Verdict,
}

impl Serialize for ChangeReport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let changes: Vec<ChangeJson<'_>> = self
            .changes
            .iter()
            .map(|c| ChangeJson {
                name: &c.name,
                before_samples: Amount::of(c.before_samples, self.before.measure),
                after_samples: Amount::of(c.after_samples, self.after.measure),
                before_share: c.before_share,
                after_share: c.after_share,
                share_delta: c.share_delta,
                before_per_unit: c.before_per_unit,
                after_per_unit: c.after_per_unit,
            })
            .collect();
        let mut st = s.serialize_struct("ChangeReport", 4)?;
        st.serialize_field("before", &self.before)?;
        st.serialize_field("after", &self.after)?;
        st.serialize_field("changes", &changes)?;
        st.serialize_field("verdict", &self.verdict)?;
        st.end()
    }
}

impl ChangeReport {
    /// Compares two reports (built with the same rules for the comparison to make
    /// sense; categories of only one side count 0 on the other).
    pub fn new(before: CategoryReport, after: CategoryReport) -> ChangeReport {
        let both_per = before.per.is_some() && after.per.is_some();
        let mut names: Vec<&str> = before.categories.iter().map(|c| c.name.as_str()).collect();
        for c in &after.categories {
            if !names.contains(&c.name.as_str()) {
                names.push(&c.name);
            }
        }
        let changes = names
            .iter()
            .map(|&name| {
                let b = before.category(name);
                let a = after.category(name);
                let bs = b.map_or(0.0, |c| c.share);
                let as_ = a.map_or(0.0, |c| c.share);
                CategoryChange {
                    name: name.to_string(),
                    before_samples: b.map_or(0, |c| c.samples),
                    after_samples: a.map_or(0, |c| c.samples),
                    before_share: bs,
                    after_share: as_,
                    share_delta: as_ - bs,
                    before_per_unit: both_per.then(|| b.and_then(|c| c.per_unit).unwrap_or(0.0)),
                    after_per_unit: both_per.then(|| a.and_then(|c| c.per_unit).unwrap_or(0.0)),
                }
            })
            .collect();
        let verdict = change_verdict(&before, &after);
        ChangeReport {
            before,
            after,
            changes,
            verdict,
        }
    }

    /// The change of category `name`.
    pub fn change(&self, name: &str) -> Option<&CategoryChange> {
        self.changes.iter().find(|c| c.name == name)
    }
}

/// The evidence of `kind` in one report, e.g. `userland-proxy 44.0% of the serving path`.
fn evidence(r: &CategoryReport, kind: VerdictKind) -> String {
    let s = |n: &str| pct(r.serving_share_of(r.samples(n)));
    match kind {
        VerdictKind::UserlandProxy => {
            format!("userland-proxy {} of the serving path", s("userland-proxy"))
        }
        VerdictKind::BridgeNat => format!(
            "bridge {} and netfilter {} of the serving path",
            s("bridge"),
            s("netfilter")
        ),
        VerdictKind::Blocking => match r.event_loops.first() {
            Some(e) => format!(
                "{} blocked outside its event wait {} of its time",
                e.process,
                pct(e.blocking_share())
            ),
            None => "no event-loop worker".to_string(),
        },
        VerdictKind::None => String::new(),
    }
}

fn describe(kind: VerdictKind) -> &'static str {
    match kind {
        VerdictKind::UserlandProxy => "the userland proxy's relaying",
        VerdictKind::BridgeNat => "the veth/bridge/NAT path",
        VerdictKind::Blocking => "an event-loop worker blocking outside its event wait",
        VerdictKind::None => "no container-network cost",
    }
}

/// Per-unit cost change of the serving path, when both sides have units of work.
fn per_unit_sentence(before: &CategoryReport, after: &CategoryReport) -> Option<String> {
    let (b, a) = (before.serving_per_unit()?, after.serving_per_unit()?);
    if b <= 0.0 {
        return None;
    }
    let change = (a - b) / b;
    let what = match after.measure.unit {
        Unit::Samples => "samples".to_string(),
        unit => format!("{} ({})", noun(unit), unit.symbol()),
    };
    Some(format!(
        " Serving-path {what} per unit of work went from {} to {} ({}{:.0}%).",
        crate::text::num(b),
        crate::text::num(a),
        if change >= 0.0 { "+" } else { "" },
        100.0 * change
    ))
}

fn change_verdict(before: &CategoryReport, after: &CategoryReport) -> Verdict {
    let (bk, ak) = (before.verdict.kind, after.verdict.kind);
    let per = per_unit_sentence(before, after).unwrap_or_default();
    let none = VerdictKind::None;
    let (kind, summary, fix) = if bk != none && ak == none {
        (
            bk,
            format!(
                "The change removed {}: {} before, {} after; after has {}.{per}",
                describe(bk),
                evidence(before, bk),
                evidence(after, bk),
                if bk == VerdictKind::Blocking {
                    "no event-loop worker blocking"
                } else {
                    "no container-network bottleneck"
                },
            ),
            format!("Keep the setup of `after`. ({})", before.verdict.fix),
        )
    } else if bk == none && ak != none {
        (
            ak,
            format!(
                "A regression: after pays for {}: {} after, {} before.{per} {}",
                describe(ak),
                evidence(after, ak),
                evidence(before, ak),
                after.verdict.summary
            ),
            after.verdict.fix.clone(),
        )
    } else if bk != none && bk == ak {
        (
            ak,
            format!(
                "Not fixed: both pay for {}: {} before, {} after.{per}",
                describe(ak),
                evidence(before, ak),
                evidence(after, ak),
            ),
            after.verdict.fix.clone(),
        )
    } else if bk != none {
        (
            ak,
            format!(
                "The change replaced {} ({} before, {} after) with {} ({} after).{per}",
                describe(bk),
                evidence(before, bk),
                evidence(after, bk),
                describe(ak),
                evidence(after, ak),
            ),
            after.verdict.fix.clone(),
        )
    } else {
        let mut moved: Vec<(&str, f64, f64)> = before
            .categories
            .iter()
            .map(|c| {
                let a = after.category(&c.name).map_or(0.0, |x| x.share);
                (c.name.as_str(), c.share, a)
            })
            .collect();
        moved.sort_by(|x, y| (y.2 - y.1).abs().total_cmp(&(x.2 - x.1).abs()));
        let moved = moved
            .iter()
            .take(3)
            .map(|(n, b, a)| format!("{n} {} → {}", pct(*b), pct(*a)))
            .collect::<Vec<_>>()
            .join(", ");
        (
            none,
            format!(
                "Neither profile shows a container-network bottleneck. Largest share changes: \
                 {moved}.{per}"
            ),
            FIX_NONE.to_string(),
        )
    };
    Verdict { kind, summary, fix }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CategoryReportOptions;
    use crate::rules::Rules;
    use nflame_profile::Profile;

    fn report(stacks: &[(&str, u64)], per: Option<f64>) -> CategoryReport {
        let p = Profile::from_stacks(stacks.iter().copied());
        let opts = CategoryReportOptions {
            per,
            ..CategoryReportOptions::default()
        };
        CategoryReport::new(&p, &Rules::default(), &opts).unwrap()
    }

    const APP: &str = "nginx;ngx_http_lua_content_handler";
    const PROXY: &str = "docker-proxy;[docker-proxy];__x64_sys_splice_[k]";
    const BRIDGE: &str = "nginx;tcp_sendmsg_[k];veth_xmit_[k]";

    fn time(stacks: &[(&str, u64)]) -> CategoryReport {
        let mut p = Profile::with_unit(Unit::Microseconds);
        for (s, c) in stacks {
            p.add(s, *c);
        }
        CategoryReport::new(&p, &Rules::default(), &CategoryReportOptions::default()).unwrap()
    }

    #[test]
    fn blocking_removed_and_introduced() {
        let wait = "nginx;[blocked];ngx_worker_process_cycle;epoll_wait;schedule_[k]";
        let exec = "nginx;[blocked];ngx_worker_process_cycle;ngx_http_lua_content_handler;\
os.execute_[l];__GI___wait4;__x64_sys_wait4_[k];schedule_[k]";
        let blocked = time(&[(exec, 800_000), (wait, 200_000)]);
        let yields = time(&[(wait, 1_000_000)]);
        let d = ChangeReport::new(blocked.clone(), yields.clone());
        assert_eq!(d.verdict.kind, VerdictKind::Blocking);
        assert!(
            d.verdict.summary.starts_with(
                "The change removed an event-loop worker blocking outside its event wait: \
                 nginx blocked outside its event wait 80.0% of its time before"
            ),
            "{}",
            d.verdict.summary
        );
        let d = ChangeReport::new(yields, blocked);
        assert_eq!(d.verdict.kind, VerdictKind::Blocking);
        assert!(
            d.verdict.summary.starts_with("A regression"),
            "{}",
            d.verdict.summary
        );
        assert!(d.verdict.fix.contains("ngx.sleep"));
    }

    #[test]
    fn proxy_removed() {
        let d = ChangeReport::new(
            report(&[(APP, 600), (PROXY, 400)], Some(100.0)),
            report(&[(APP, 600)], Some(120.0)),
        );
        assert_eq!(d.verdict.kind, VerdictKind::UserlandProxy);
        assert!(d
            .verdict
            .summary
            .starts_with("The change removed the userland proxy"));
        assert!(d
            .verdict
            .summary
            .contains("40.0% of the serving path before"));
        assert!(
            d.verdict.summary.contains("from 10 to 5 (-50%)"),
            "{}",
            d.verdict.summary
        );
        let c = d.change("userland-proxy").unwrap();
        assert_eq!((c.before_samples, c.after_samples), (400, 0));
        assert!((c.share_delta + 0.4).abs() < 1e-12);
        assert_eq!(c.before_per_unit, Some(4.0));
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["before"]["verdict"]["kind"], "userland-proxy");
        assert_eq!(v["after"]["verdict"]["kind"], "none");
        assert_eq!(v["verdict"]["kind"], "userland-proxy");
    }

    #[test]
    fn regression_same_and_replaced() {
        let host = report(&[(APP, 1000)], None);
        let proxy = report(&[(APP, 600), (PROXY, 400)], None);
        let nat = report(&[(APP, 900), (BRIDGE, 100)], None);
        let d = ChangeReport::new(host.clone(), proxy.clone());
        assert_eq!(d.verdict.kind, VerdictKind::UserlandProxy);
        assert!(d.verdict.summary.starts_with("A regression"));
        let d = ChangeReport::new(proxy.clone(), proxy.clone());
        assert!(d.verdict.summary.starts_with("Not fixed"));
        let d = ChangeReport::new(proxy, nat.clone());
        assert_eq!(d.verdict.kind, VerdictKind::BridgeNat);
        assert!(d.verdict.summary.starts_with("The change replaced"));
        let d = ChangeReport::new(host.clone(), host);
        assert_eq!(d.verdict.kind, VerdictKind::None);
        assert!(d.change("bridge").unwrap().before_per_unit.is_none());
    }
}
