//! Profiles carried inside nflame's SVGs.
//!
//! Every SVG nflame writes holds, in `<metadata>` elements near its start, the
//! context of the recording ([`Context`], JSON) and the profile(s) it was
//! drawn from (folded text, gzip-compressed, base64-encoded). So a flame graph
//! attached to an incident report is also its data: `nflame render x.svg`,
//! `nflame diff a.svg b.svg` and `nflame report x.svg` read it back.
//!
//! The elements:
//! ```text
//! <metadata id="nflame-context"><![CDATA[{...json...}]]></metadata>
//! <metadata id="nflame-profile-ROLE" encoding="gzip+base64">H4sI…</metadata>
//! ```
//! ROLE is `profile` for a flame graph, `before` and `after` for a diff. A
//! profile's folded text starts with its unit header unless it counts samples
//! (see [`crate::folded`]), and the context names the unit too (`"unit"`,
//! absent for samples), so the graph's legend and its data agree.

use std::io::{Read, Write};
use std::path::Path;

use base64::Engine as _;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};

use crate::folded::{LineReader, ReadOptions};
use crate::io::Input;
use crate::unit::{Measure, Unit};
use crate::{Error, ParseErrorKind, Profile};

/// What a profile is a recording of: shown on the graph and stored in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Context {
    /// The tool that wrote the file: always "nflame".
    pub tool: String,
    /// nflame's version.
    pub version: String,
    /// "profile" or "diff".
    pub kind: String,
    /// Host the recording was made on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Kernel release of that host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// The perf event sampled (cycles, cpu-clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Sampling frequency in Hz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<u64>,
    /// Recording duration in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    /// The profile's total, in stored counts (samples, unless [`Context::unit`]
    /// says otherwise; see [`Context::decimals`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// What the counts measure (absent: samples).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "unit_name")]
    pub unit: Option<Unit>,
    /// Decimals of the stored counts (absent: whole counts; see [`crate::unit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
    /// Samples lost during recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// What was recorded (pids, names, commands).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Input files the graph was drawn from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// The command line that produced the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// When the file was made (UTC, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// A verdict or any other structured note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<serde_json::Value>,
}

impl Context {
    /// A context for nflame `version` and `kind` ("profile" or "diff").
    pub fn new(version: &str, kind: &str) -> Context {
        Context {
            tool: "nflame".into(),
            version: version.into(),
            kind: kind.into(),
            ..Context::default()
        }
    }

    /// How the counts read: [`Context::unit`] and [`Context::decimals`].
    pub fn measure(&self) -> Measure {
        Measure {
            unit: self.unit.unwrap_or_default(),
            decimals: self.decimals.unwrap_or(0),
        }
    }

    /// Records how `profile`'s counts read (the unit only when it is not
    /// samples, the decimals only when there are some).
    pub fn set_measure(&mut self, measure: Measure) {
        self.unit = (measure.unit != Unit::Samples).then_some(measure.unit);
        self.decimals = (measure.decimals > 0).then_some(measure.decimals);
    }

    /// One line for the graph: host, kernel, event, frequency, duration,
    /// samples (or time), lost, targets, nflame version — whatever is known.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(h) = &self.host {
            parts.push(h.clone());
        }
        if let Some(k) = &self.kernel {
            parts.push(format!("Linux {k}"));
        }
        match (&self.event, self.frequency) {
            (Some(e), Some(f)) => parts.push(format!("{e} @ {f} Hz")),
            (Some(e), None) => parts.push(e.clone()),
            (None, Some(f)) => parts.push(format!("{f} Hz")),
            (None, None) => {}
        }
        if let Some(d) = self.duration_secs {
            parts.push(format!("{d:.1} s"));
        }
        if let Some(s) = self.samples {
            let measure = self.measure();
            let lost = match self.lost {
                Some(l) if measure == Measure::SAMPLES && s + l > 0 => {
                    format!(", {l} lost ({:.2}%)", l as f64 * 100.0 / (s + l) as f64)
                }
                Some(l) if l > 0 && measure != Measure::SAMPLES => format!(", {l} lost"),
                _ => String::new(),
            };
            parts.push(format!("{}{lost}", measure.with_symbol(s)));
        }
        if !self.targets.is_empty() {
            parts.push(format!("targets: {}", self.targets.join(", ")));
        } else if !self.inputs.is_empty() {
            parts.push(self.inputs.join(", "));
        }
        if let Some(c) = &self.created {
            parts.push(c.clone());
        }
        parts.push(format!("{} {}", self.tool, self.version));
        parts.join(" · ")
    }
}

/// [`Unit`] in JSON: its name.
mod unit_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::unit::Unit;

    pub(super) fn serialize<S: Serializer>(u: &Option<Unit>, s: S) -> Result<S::Ok, S::Error> {
        match u {
            Some(u) => s.serialize_str(u.name()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Unit>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(name) => Unit::from_name(&name)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown unit {name:?}"))),
        }
    }
}

/// What an nflame SVG carries.
#[derive(Debug, Clone, Default)]
pub struct Embedded {
    /// The context, if stored.
    pub context: Option<Context>,
    /// Profiles by role ("profile", "before", "after").
    pub profiles: Vec<(String, Profile)>,
}

impl Embedded {
    /// The profile with `role`, if present.
    pub fn get(&self, role: &str) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, p)| p)
    }
}

const CONTEXT_ID: &str = "nflame-context";
const PROFILE_ID_PREFIX: &str = "nflame-profile-";

/// The `<metadata>` elements for `context` and `profiles` (role, profile).
/// Profiles are compressed in parallel.
pub fn metadata_xml(context: &Context, profiles: &[(&str, &Profile)]) -> String {
    use rayon::prelude::*;
    let json = serde_json::to_string(context).unwrap_or_else(|_| "{}".into());
    // `<`, `>` and `&` can only occur inside JSON strings, where their `\u` escapes
    // mean the same: no markup (and no `]]>`) can appear in the document.
    let json = json
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let encoded: Vec<String> = profiles
        .par_iter()
        .map(|(_, p)| encode_profile(p))
        .collect();
    let mut out = format!("<metadata id=\"{CONTEXT_ID}\"><![CDATA[{json}]]></metadata>\n");
    for ((role, _), data) in profiles.iter().zip(encoded) {
        out.reserve(data.len() + 80);
        out.push_str(&format!(
            "<metadata id=\"{PROFILE_ID_PREFIX}{role}\" encoding=\"gzip+base64\">"
        ));
        out.push_str(&data);
        out.push_str("</metadata>\n");
    }
    out
}

/// A profile as base64 of gzip of its folded text.
pub fn encode_profile(profile: &Profile) -> String {
    // Level 1: embedding must not make writing an SVG slow; the data is
    // repetitive enough that it still compresses about 10:1.
    let mut gz = GzEncoder::new(Vec::with_capacity(1 << 20), Compression::new(1));
    {
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, &mut gz);
        // Order does not matter to a reader: skip the sort. Writing into a Vec
        // cannot fail.
        let _ = crate::folded::write_header(&mut w, profile.unit());
        for (stack, count) in profile.iter() {
            let _ = crate::folded::write_line(&mut w, stack, count, profile.decimals());
        }
        let _ = w.flush();
    }
    let bytes = gz.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Inserts `metadata` right after the opening `<svg …>` tag of `svg`.
pub fn insert_metadata(svg: &[u8], metadata: &str) -> Vec<u8> {
    let at = find_svg_open_end(svg).unwrap_or(0);
    let mut out = Vec::with_capacity(svg.len() + metadata.len() + 1);
    out.extend_from_slice(&svg[..at]);
    out.push(b'\n');
    out.extend_from_slice(metadata.as_bytes());
    out.extend_from_slice(&svg[at..]);
    out
}

fn find_svg_open_end(svg: &[u8]) -> Option<usize> {
    let start = memchr::memmem::find(svg, b"<svg")?;
    let end = memchr::memchr(b'>', &svg[start..])?;
    Some(start + end + 1)
}

/// Whether the start of a file looks like SVG/XML rather than folded text.
pub fn looks_like_svg(head: &[u8]) -> bool {
    let t = head.trim_ascii_start();
    t.starts_with(b"<?xml") || t.starts_with(b"<svg") || t.starts_with(b"<!DOCTYPE svg")
}

/// Reads what an nflame SVG carries. An SVG that is not nflame's is an error
/// that says so.
pub fn read_svg(input: &mut Input) -> Result<Embedded, Error> {
    let mut text = String::new();
    input
        .reader()
        .read_to_string(&mut text)
        .map_err(|e| input.read_error(e))?;
    extract(&text, input.path())
}

/// Extracts the embedded context and profiles from SVG text.
pub fn extract(svg: &str, path: &Path) -> Result<Embedded, Error> {
    let not_ours = || Error::NotNflameSvg {
        path: path.to_path_buf(),
    };
    let corrupt = |what: String| Error::CorruptSvgMetadata {
        path: path.to_path_buf(),
        what,
    };
    let mut embedded = Embedded::default();
    if let Some(body) = element_body(svg, &format!("<metadata id=\"{CONTEXT_ID}\">")) {
        let json = body
            .trim()
            .strip_prefix("<![CDATA[")
            .and_then(|b| b.strip_suffix("]]>"))
            .ok_or_else(|| corrupt("the context is not in a CDATA section".into()))?;
        let ctx: Context =
            serde_json::from_str(json).map_err(|e| corrupt(format!("the context: {e}")))?;
        embedded.context = Some(ctx);
    }
    let open = format!("<metadata id=\"{PROFILE_ID_PREFIX}");
    let mut rest = svg;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let role_end = rest
            .find('"')
            .ok_or_else(|| corrupt("an unterminated profile id".into()))?;
        let role = rest[..role_end].to_string();
        let body_start = rest
            .find('>')
            .ok_or_else(|| corrupt("an unterminated element".into()))?
            + 1;
        let body_end = rest[body_start..]
            .find("</metadata>")
            .ok_or_else(|| corrupt(format!("profile {role:?} is not closed")))?
            + body_start;
        let profile = decode_profile(rest[body_start..body_end].trim()).map_err(|source| {
            Error::CorruptEmbeddedProfile {
                path: path.to_path_buf(),
                role: role.clone(),
                source,
            }
        })?;
        embedded.profiles.push((role, profile));
        rest = &rest[body_end..];
    }
    if embedded.context.is_none() && embedded.profiles.is_empty() {
        return Err(not_ours());
    }
    if embedded.profiles.is_empty() {
        return Err(corrupt("it holds no profile".into()));
    }
    Ok(embedded)
}

fn element_body<'a>(svg: &'a str, open: &str) -> Option<&'a str> {
    let start = svg.find(open)? + open.len();
    let end = svg[start..].find("</metadata>")? + start;
    Some(&svg[start..end])
}

/// Why a profile embedded in an SVG cannot be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The element's text is not base64.
    #[error("bad base64")]
    Base64(#[source] base64::DecodeError),
    /// The decoded bytes are not a complete gzip stream of UTF-8 text.
    #[error("bad gzip data")]
    Gzip(#[source] std::io::Error),
    /// The samples add up to more than 2^64-1.
    #[error("line {line}: the total overflows")]
    Overflow {
        /// 1-based line of the decoded folded text.
        line: usize,
    },
    /// A line of the decoded folded text is malformed.
    #[error("line {line}: {kind}")]
    Line {
        /// 1-based line of the decoded folded text.
        line: usize,
        /// What is wrong with it.
        kind: crate::ParseErrorKind,
    },
}

fn decode_profile(b64: &str) -> Result<Profile, DecodeError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(DecodeError::Base64)?;
    let mut text = String::new();
    MultiGzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .map_err(DecodeError::Gzip)?;
    let mut profile = Profile::new();
    let mut reader = LineReader::new(String::new(), &ReadOptions::default());
    let error = |line: usize, kind: ParseErrorKind| match kind {
        ParseErrorKind::TotalOverflow(_) => DecodeError::Overflow { line },
        kind => DecodeError::Line { line, kind },
    };
    for (i, line) in text.lines().enumerate() {
        let sample = reader.line(i as u64 + 1, Ok(line)).map_err(|e| match e {
            Error::Parse(p) => error(i + 1, p.kind),
            // The reader only reports the lines it is given.
            other => error(i + 1, ParseErrorKind::Other(other.to_string())),
        })?;
        if let Some((stack, count)) = sample {
            if profile.is_empty() {
                profile.set_unit(reader.unit());
            }
            profile
                .add_count(stack, count)
                .map_err(|kind| error(i + 1, kind))?;
        }
    }
    Ok(profile)
}

/// Writes `svg` with the metadata inserted (see [`insert_metadata`]).
pub fn write_with_metadata<W: Write + ?Sized>(
    w: &mut W,
    svg: &[u8],
    metadata: &str,
) -> std::io::Result<()> {
    // The bytes of `insert_metadata`, without copying the SVG and the metadata
    // into one buffer first.
    let at = find_svg_open_end(svg).unwrap_or(0);
    w.write_all(&svg[..at])?;
    w.write_all(b"\n")?;
    w.write_all(metadata.as_bytes())?;
    w.write_all(&svg[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_svg_text() {
        let p = Profile::from_stacks([("main;a<b>&c", 3), ("main;\"q\";]]>", 4)]);
        let mut ctx = Context::new("0.1.0", "profile");
        ctx.targets = vec!["pid 1 ]]> <script>".into()];
        let svg = b"<?xml version=\"1.0\"?>\n<svg width=\"10\">\n<g/></svg>";
        let out = insert_metadata(svg, &metadata_xml(&ctx, &[("profile", &p)]));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("<?xml version=\"1.0\"?>\n<svg width=\"10\">\n<metadata"));
        assert!(
            !text.contains("<script>"),
            "the context is escaped inside CDATA"
        );
        let e = extract(&text, Path::new("x.svg")).unwrap();
        assert_eq!(e.context.as_ref().unwrap(), &ctx);
        assert_eq!(e.get("profile").unwrap(), &p);
    }

    #[test]
    fn units_and_decimals_round_trip() {
        let mut p = Profile::with_unit(crate::Unit::Microseconds);
        p.add_count(
            "main;read",
            crate::unit::Count {
                value: 15,
                decimals: 1,
            },
        )
        .unwrap();
        // Stored counts have the profile's decimal: 30 is 3 µs.
        p.add("main;poll", 30);
        let mut ctx = Context::new("0.1.0", "profile");
        ctx.samples = Some(p.total());
        ctx.set_measure(p.measure());
        let out = insert_metadata(b"<svg>\n</svg>", &metadata_xml(&ctx, &[("profile", &p)]));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\"unit\":\"microseconds\",\"decimals\":1"),
            "{text}"
        );
        let e = extract(&text, Path::new("x.svg")).unwrap();
        assert_eq!(e.get("profile").unwrap(), &p);
        assert_eq!(e.get("profile").unwrap().unit(), crate::Unit::Microseconds);
        let c = e.context.unwrap();
        assert_eq!(c.measure(), p.measure());
        assert_eq!(c.summary(), "4.5 µs · nflame 0.1.0");
        // Samples need neither.
        let mut s = Context::new("0.1.0", "profile");
        s.set_measure(crate::Measure::SAMPLES);
        assert!(!serde_json::to_string(&s).unwrap().contains("unit"));
    }

    #[test]
    fn foreign_svg_is_rejected_by_name() {
        let e = extract("<svg><g/></svg>", Path::new("other.svg")).unwrap_err();
        assert!(e.to_string().contains("other.svg"), "{e}");
        assert!(e.to_string().contains("not written by nflame"), "{e}");
    }

    #[test]
    fn corrupt_profile_is_reported() {
        let svg = "<svg><metadata id=\"nflame-profile-profile\" encoding=\"gzip+base64\">@@@</metadata></svg>";
        let e = extract(svg, Path::new("c.svg")).unwrap_err();
        let e = crate::error::chain(&e);
        assert!(e.contains("c.svg") && e.contains("base64"), "{e}");
    }

    #[test]
    fn summary_lists_what_is_known() {
        let mut c = Context::new("0.1.0", "profile");
        c.host = Some("h1".into());
        c.event = Some("cpu-clock".into());
        c.frequency = Some(999);
        c.samples = Some(990);
        c.lost = Some(10);
        assert_eq!(
            c.summary(),
            "h1 · cpu-clock @ 999 Hz · 990 samples, 10 lost (1.00%) · nflame 0.1.0"
        );
    }
}
