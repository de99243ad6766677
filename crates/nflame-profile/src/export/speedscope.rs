//! speedscope's file format (`https://www.speedscope.app/file-format-schema.json`):
//! one "sampled" profile whose frames are shared.
//!
//! Every distinct frame name is one entry of `shared.frames` (kernel frames keep
//! their `_[k]` suffix: speedscope colours and searches by name, and the suffix
//! is how a reader tells them apart). Every distinct stack is one sample, a list
//! of frame indices root first, in the order of the stacks' text; its weight is
//! its count (unit `none`), or its count × [`ExportMeta::period_ns`] when the
//! period is known (unit `nanoseconds`); a profile weighted by time has its
//! microseconds (unit `microseconds`, and no period). Fractional counts are
//! written exactly, as decimal numbers. `endValue` is the sum of the weights.
//!
//! The JSON is streamed: memory grows with the distinct frames, not the output.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use rustc_hash::FxHashMap;

use super::{writer_name, ExportMeta, Format};
use crate::unit::{push_fixed128, Unit};
use crate::{Error, Profile};

/// The schema URL speedscope recognises its files by.
pub const SCHEMA_URL: &str = "https://www.speedscope.app/file-format-schema.json";

/// Writes `profile` to `w` as a speedscope JSON file; see the module
/// documentation. Errors name the output as `<speedscope output of NAME>`;
/// [`super::export_file`] names the file instead.
pub fn write_speedscope<W: Write>(profile: &Profile, meta: &ExportMeta, w: W) -> Result<(), Error> {
    write_named(profile, meta, w, &writer_name(Format::Speedscope, meta))
}

/// [`write_speedscope`] with errors naming `name`.
pub(crate) fn write_named<W: Write>(
    profile: &Profile,
    meta: &ExportMeta,
    w: W,
    name: &Path,
) -> Result<(), Error> {
    if profile.unit().is_time() && meta.period_ns.is_some_and(|p| p > 0) {
        return Err(Error::InvalidOption(format!(
            "{}: a sampling period turns sample counts into CPU time; this profile is in {} already",
            name.display(),
            profile.unit()
        )));
    }
    let mut w = BufWriter::new(w);
    write_json(profile, meta, &mut w)
        .and_then(|()| w.flush())
        .map_err(|source| Error::Write {
            path: name.to_path_buf(),
            source,
        })
}

fn json_string<W: Write>(w: &mut W, s: &str) -> io::Result<()> {
    serde_json::to_writer(w, s).map_err(io::Error::from)
}

fn write_json<W: Write>(profile: &Profile, meta: &ExportMeta, w: &mut W) -> io::Result<()> {
    let stacks = profile.sorted();
    let mut index: FxHashMap<&str, usize> = FxHashMap::default();
    let mut frames: Vec<&str> = Vec::new();
    for (stack, _) in &stacks {
        for frame in stack.split(';') {
            index.entry(frame).or_insert_with(|| {
                frames.push(frame);
                frames.len() - 1
            });
        }
    }
    let period = meta.period_ns.filter(|&p| p > 0);
    let weight = |count: u64| u128::from(count) * u128::from(period.unwrap_or(1));
    let decimals = profile.decimals();
    let mut text = String::new();
    let mut write_weight = |w: &mut W, weight: u128| {
        text.clear();
        push_fixed128(&mut text, weight, decimals);
        w.write_all(text.as_bytes())
    };

    let mut num = itoa::Buffer::new();
    w.write_all(b"{\"$schema\":")?;
    json_string(w, SCHEMA_URL)?;
    w.write_all(b",\"exporter\":")?;
    json_string(w, &format!("nflame {}", env!("CARGO_PKG_VERSION")))?;
    w.write_all(b",\"name\":")?;
    json_string(w, meta.display_name())?;
    w.write_all(b",\"activeProfileIndex\":0,\"shared\":{\"frames\":[")?;
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        w.write_all(b"{\"name\":")?;
        json_string(w, frame)?;
        w.write_all(b"}")?;
    }
    w.write_all(b"]},\"profiles\":[{\"type\":\"sampled\",\"name\":")?;
    json_string(w, meta.display_name())?;
    w.write_all(b",\"unit\":")?;
    json_string(
        w,
        match profile.unit() {
            Unit::Microseconds => "microseconds",
            _ if period.is_some() => "nanoseconds",
            _ => "none",
        },
    )?;
    w.write_all(b",\"startValue\":0,\"endValue\":")?;
    let end: u128 = stacks.iter().map(|&(_, c)| weight(c)).sum();
    write_weight(w, end)?;
    w.write_all(b",\"samples\":[")?;
    for (i, (stack, _)) in stacks.iter().enumerate() {
        w.write_all(if i > 0 { b",[" } else { b"[" })?;
        for (j, frame) in stack.split(';').enumerate() {
            if j > 0 {
                w.write_all(b",")?;
            }
            w.write_all(num.format(index[frame]).as_bytes())?;
        }
        w.write_all(b"]")?;
    }
    w.write_all(b"],\"weights\":[")?;
    for (i, &(_, count)) in stacks.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        write_weight(w, weight(count))?;
    }
    w.write_all(b"]}]}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn export(p: &Profile, meta: &ExportMeta) -> Value {
        let mut out = Vec::new();
        write_speedscope(p, meta, &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn writes_the_sampled_format() {
        let p = Profile::from_stacks([("main;b", 2), ("main;a_[k]", 3)]);
        let v = export(&p, &ExportMeta::new("demo"));
        assert_eq!(
            v,
            json!({
                "$schema": SCHEMA_URL,
                "exporter": format!("nflame {}", env!("CARGO_PKG_VERSION")),
                "name": "demo",
                "activeProfileIndex": 0,
                "shared": {"frames": [{"name": "main"}, {"name": "a_[k]"}, {"name": "b"}]},
                "profiles": [{
                    "type": "sampled",
                    "name": "demo",
                    "unit": "none",
                    "startValue": 0,
                    "endValue": 5,
                    "samples": [[0, 1], [0, 2]],
                    "weights": [3, 2],
                }],
            })
        );
    }

    #[test]
    fn period_gives_nanoseconds_without_overflow() {
        let p = Profile::from_stacks([("a", u64::MAX - 1), ("b", 1)]);
        let meta = ExportMeta {
            period_ns: Some(u64::MAX),
            ..ExportMeta::default()
        };
        let mut out = Vec::new();
        write_speedscope(&p, &meta, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let end = u128::from(u64::MAX) * u128::from(u64::MAX);
        assert!(text.contains(&format!("\"endValue\":{end}")), "{text}");
        assert!(text.contains("\"unit\":\"nanoseconds\""));
        // serde_json reads the numbers too (as floats when they are this large).
        let _: Value = serde_json::from_str(&text).unwrap();
    }

    #[test]
    fn time_and_fractions() {
        let mut p = Profile::with_unit(Unit::Microseconds);
        p.add_count(
            "a",
            crate::unit::Count {
                value: 15,
                decimals: 1,
            },
        )
        .unwrap();
        p.add_count("b", crate::unit::Count::whole(2)).unwrap();
        let v = export(&p, &ExportMeta::new("t"));
        assert_eq!(v["profiles"][0]["unit"], "microseconds");
        assert_eq!(v["profiles"][0]["weights"], json!([1.5, 2]));
        assert_eq!(v["profiles"][0]["endValue"], 3.5);
        let meta = ExportMeta {
            period_ns: Some(1000),
            ..ExportMeta::default()
        };
        let mut out = Vec::new();
        let e = write_speedscope(&p, &meta, &mut out).unwrap_err();
        assert!(e.to_string().contains("in microseconds already"), "{e}");
    }

    #[test]
    fn odd_names_and_empty_profiles_are_valid_json() {
        let p = Profile::from_stacks([("\"quoted\"\\;tab\there;日本語", 1), ("", 2), ("a;;b", 3)]);
        let v = export(&p, &ExportMeta::new("n\u{0}ame"));
        let frames = v["shared"]["frames"].as_array().unwrap();
        let names: Vec<&str> = frames.iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"\"quoted\"\\"), "{names:?}");
        assert!(names.contains(&"tab\there"));
        assert!(names.contains(&""));
        assert_eq!(v["name"], "n\u{0}ame");
        let v = export(&Profile::new(), &ExportMeta::default());
        assert_eq!(v["profiles"][0]["samples"], json!([]));
        assert_eq!(v["profiles"][0]["endValue"], 0);
        assert_eq!(v["name"], "nflame");
    }

    #[test]
    fn write_errors_name_the_output() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("no space left"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::Error::other("no space left"))
            }
        }
        let p = Profile::from_stacks([("a", 1)]);
        let e = write_speedscope(&p, &ExportMeta::new("web"), Broken).unwrap_err();
        assert_eq!(
            crate::error::chain(&e),
            "cannot write <speedscope output of web>: no space left"
        );
    }
}
