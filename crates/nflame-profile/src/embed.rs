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
//!
//! The text is compressed in parallel, about 1 MiB of it per gzip member
//! ([`compress_stacks`]); concatenated members are one gzip stream to any
//! reader. Stacks are written in the order given: sorted, neighbours share
//! prefixes, which compresses better.
//!
//! # Huge profiles
//!
//! A browser must parse the whole SVG, metadata included, before it shows
//! anything: Chromium 130 opened an SVG carrying 128 MB of metadata in about
//! 4 s, 512 MB in 18 s, and its tab crashed on 1 GB. So the profiles of one
//! SVG are embedded only while their encoded size stays within a limit
//! ([`DEFAULT_EMBED_LIMIT`], 128 MiB; [`carry`] applies it). Beyond it, each
//! profile is written beside the SVG as a gzip folded file, which the SVG
//! names (`encoding="file"`), or, when there is no file to write it to, left
//! out with a note (`encoding="omitted"`); reading such an SVG back reads the
//! file beside it, or says that the profile was left out.

use std::io::{Read, Write};
use std::path::Path;

use base64::Engine as _;
use flate2::read::MultiGzDecoder;
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
/// The `encoding` of an embedded profile, of one written beside the SVG, of
/// one left out.
const EMBEDDED: &str = "gzip+base64";
const BESIDE: &str = "file";
const OMITTED: &str = "omitted";

/// The most bytes of encoded profiles one SVG carries by default: 128 MiB
/// (see the module's documentation).
pub const DEFAULT_EMBED_LIMIT: u64 = 128 << 20;

/// Bytes of folded text per gzip member.
const MEMBER_TEXT: usize = 1 << 20;

/// A profile's folded text, gzip-compressed in members of about 1 MiB of
/// text each, compressed side by side. The members concatenated are one gzip
/// stream (what [`Compressed::write_gzip`] writes: a `.folded.gz` file).
#[derive(Debug, Clone, Default)]
pub struct Compressed {
    members: Vec<Vec<u8>>,
    text_bytes: u64,
    stacks: u64,
}

impl Compressed {
    /// Compressed bytes.
    pub fn len(&self) -> u64 {
        self.members.iter().map(|m| m.len() as u64).sum()
    }

    /// Whether nothing was compressed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of folded text compressed.
    pub fn text_len(&self) -> u64 {
        self.text_bytes
    }

    /// Stacks written.
    pub fn stacks(&self) -> u64 {
        self.stacks
    }

    /// Bytes of the base64 text embedded in an SVG.
    pub fn base64_len(&self) -> u64 {
        self.len().div_ceil(3) * 4
    }

    /// Writes the gzip stream.
    pub fn write_gzip<W: Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        for m in &self.members {
            w.write_all(m)?;
        }
        Ok(())
    }

    /// Writes the gzip stream base64-encoded (standard alphabet, padded), as
    /// it is embedded.
    pub fn write_base64<W: Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        let mut b = Base64::default();
        for m in &self.members {
            b.write(w, m)?;
        }
        b.finish(w)
    }
}

/// Base64 (standard alphabet, padded) of bytes given in pieces of any size.
struct Base64 {
    /// Bytes of the last piece not encoded yet (fewer than three).
    carry: [u8; 3],
    carried: usize,
    out: Vec<u8>,
}

impl Default for Base64 {
    fn default() -> Base64 {
        Base64 {
            carry: [0; 3],
            carried: 0,
            out: vec![0u8; 64 * 1024],
        }
    }
}

impl Base64 {
    /// Encodes `data` after what came before.
    fn write<W: Write + ?Sized>(&mut self, w: &mut W, mut data: &[u8]) -> std::io::Result<()> {
        let engine = &base64::engine::general_purpose::STANDARD;
        if self.carried > 0 {
            let take = (3 - self.carried).min(data.len());
            self.carry[self.carried..self.carried + take].copy_from_slice(&data[..take]);
            self.carried += take;
            data = &data[take..];
            if self.carried < 3 {
                return Ok(());
            }
            let n = engine
                .encode_slice(self.carry, &mut self.out)
                .map_err(std::io::Error::other)?;
            w.write_all(&self.out[..n])?;
            self.carried = 0;
        }
        let whole = data.len() / 3 * 3;
        for block in data[..whole].chunks(48 * 1024) {
            let n = engine
                .encode_slice(block, &mut self.out)
                .map_err(std::io::Error::other)?;
            w.write_all(&self.out[..n])?;
        }
        let rest = &data[whole..];
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carried = rest.len();
        Ok(())
    }

    /// Encodes what is left, padded.
    fn finish<W: Write + ?Sized>(mut self, w: &mut W) -> std::io::Result<()> {
        if self.carried > 0 {
            let engine = &base64::engine::general_purpose::STANDARD;
            let n = engine
                .encode_slice(&self.carry[..self.carried], &mut self.out)
                .map_err(std::io::Error::other)?;
            w.write_all(&self.out[..n])?;
        }
        Ok(())
    }
}

/// The most bytes of base64 that embedding folded text of `text_bytes`
/// bytes takes, whatever it compresses to: deflate falls back to stored
/// blocks where coding would grow the data (a few bytes each: text that
/// does not compress at all grows by about 0.1%); this allows 0.8%, and
/// 128 bytes for each gzip member (every member but the last holds at
/// least [`MEMBER_TEXT`] bytes of text). Used to decide before compressing
/// that profiles fit the embedding limit: at worst, were the bound
/// exceeded, an SVG would carry a little more than its limit.
pub fn base64_bound(text_bytes: u64) -> u64 {
    let members = text_bytes / MEMBER_TEXT as u64 + 1;
    let gzip = text_bytes + text_bytes / 128 + 128 * members;
    gzip.div_ceil(3) * 4
}

/// Hands profile `k`'s stacks, in order, to the function given (see
/// [`write_metadata_compressing`]).
pub type HandStacks<'a> = dyn FnMut(usize, &mut dyn FnMut(&str, u64)) + 'a;

/// Writes the `<metadata>` elements of `context` and of profiles that are
/// compressed as they are written, all embedded: `profiles` gives each
/// one's role and measure, and `stacks(k, push)` hands profile `k`'s stacks
/// to `push` in order. Members are compressed a few at a time, in parallel,
/// and written in order: what is held is those few, never a whole profile
/// compressed. The result reads as [`write_metadata`]'s with
/// [`Carried::Embedded`] profiles.
pub fn write_metadata_compressing<W: Write + ?Sized>(
    w: &mut W,
    context: &Context,
    profiles: &[(&str, Measure)],
    stacks: &mut HandStacks<'_>,
) -> std::io::Result<()> {
    w.write_all(context_element(context).as_bytes())?;
    let batch = 2 * rayon::current_num_threads().max(1);
    for (k, (role, measure)) in profiles.iter().enumerate() {
        write!(
            w,
            "<metadata id=\"{PROFILE_ID_PREFIX}{role}\" encoding=\"{EMBEDDED}\">"
        )?;
        let mut b64 = Base64::default();
        let mut texts: Vec<Vec<u8>> = Vec::with_capacity(batch);
        let mut text = Vec::with_capacity(MEMBER_TEXT + MEMBER_TEXT / 8);
        // Writing into a Vec cannot fail.
        let _ = crate::folded::write_header(&mut text, measure.unit);
        let mut failed: Option<std::io::Error> = None;
        // Compresses the members waiting, side by side, and writes them in
        // order (after a write failed, nothing more is written).
        fn flush<W: Write + ?Sized>(
            texts: &mut Vec<Vec<u8>>,
            b64: &mut Base64,
            w: &mut W,
            failed: &mut Option<std::io::Error>,
        ) {
            use rayon::prelude::*;
            let members: Vec<Vec<u8>> = texts.par_iter().map(|t| gzip_member(t)).collect();
            texts.clear();
            for m in &members {
                if failed.is_none() {
                    if let Err(e) = b64.write(w, m) {
                        *failed = Some(e);
                    }
                }
            }
        }
        stacks(k, &mut |stack, count| {
            let _ = crate::folded::write_line(&mut text, stack, count, measure.decimals);
            if text.len() >= MEMBER_TEXT {
                texts.push(std::mem::replace(
                    &mut text,
                    Vec::with_capacity(MEMBER_TEXT + MEMBER_TEXT / 8),
                ));
                if texts.len() == batch {
                    flush(&mut texts, &mut b64, w, &mut failed);
                }
            }
        });
        if !text.is_empty() || texts.is_empty() {
            texts.push(text);
        }
        flush(&mut texts, &mut b64, w, &mut failed);
        if let Some(e) = failed {
            return Err(e);
        }
        b64.finish(w)?;
        w.write_all(b"</metadata>\n")?;
    }
    Ok(())
}

/// One gzip member of `text`: a header, the deflate stream (miniz_oxide at
/// level 1, fast and fair on folded text, where zlib-rs's fastest level
/// compresses it a third worse, more slowly), CRC-32 and length.
fn gzip_member(text: &[u8]) -> Vec<u8> {
    let deflated = miniz_oxide::deflate::compress_to_vec(text, 1);
    let mut out = Vec::with_capacity(deflated.len() + 18);
    // Magic, deflate, no flags, no time, fastest, unknown system.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 0xff]);
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&crc32fast::hash(text).to_le_bytes());
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out
}

/// Compresses the folded text of the stacks `stack(0)`, …, `stack(n - 1)`
/// (`None` skips one), after the unit header of `measure`, with counts of its
/// decimals. Members are compressed in parallel (gzip level 1: embedding must
/// not make writing an SVG slow).
pub fn compress_stacks<'a, F>(measure: Measure, n: usize, stack: F) -> Compressed
where
    F: Fn(usize) -> Option<(&'a str, u64)> + Sync,
{
    use rayon::prelude::*;
    // Members of about MEMBER_TEXT bytes of text (counts taken as 12 bytes).
    let mut bounds = vec![0];
    let mut text = 0usize;
    let mut stacks = 0u64;
    for i in 0..n {
        if let Some((s, _)) = stack(i) {
            text += s.len() + 12;
            stacks += 1;
            if text >= MEMBER_TEXT {
                bounds.push(i + 1);
                text = 0;
            }
        }
    }
    if bounds.len() == 1 || *bounds.last().expect("a bound") < n {
        bounds.push(n);
    }
    let members: Vec<(Vec<u8>, u64)> = bounds
        .par_windows(2)
        .enumerate()
        .map(|(k, range)| {
            let mut text = Vec::with_capacity(MEMBER_TEXT + MEMBER_TEXT / 8);
            // Writing into a Vec cannot fail.
            if k == 0 {
                let _ = crate::folded::write_header(&mut text, measure.unit);
            }
            for i in range[0]..range[1] {
                if let Some((s, c)) = stack(i) {
                    let _ = crate::folded::write_line(&mut text, s, c, measure.decimals);
                }
            }
            (gzip_member(&text), text.len() as u64)
        })
        .collect();
    Compressed {
        text_bytes: members.iter().map(|m| m.1).sum(),
        members: members.into_iter().map(|m| m.0).collect(),
        stacks,
    }
}

/// Compresses the folded text of the stacks `produce` hands to the function
/// it is given, in that order, as [`compress_stacks`] does; members are
/// compressed by other threads while `produce` goes on (its result is
/// returned too). For a caller that reads every stack anyway: the text is
/// copied while it is in the cache.
pub fn compress_while<R: Send>(
    measure: Measure,
    produce: impl FnOnce(&mut dyn FnMut(&str, u64)) -> R + Send,
) -> (R, Compressed) {
    let (r, mut c) = compress_each_while(&[measure], |push| {
        produce(&mut |stack, count| push(0, stack, count))
    });
    (r, c.pop().expect("one profile"))
}

/// [`compress_while`] for several profiles at once: `produce` hands each
/// stack with the index of its profile in `measures`.
pub fn compress_each_while<R: Send>(
    measures: &[Measure],
    produce: impl FnOnce(&mut dyn FnMut(usize, &str, u64)) -> R + Send,
) -> (R, Vec<Compressed>) {
    use std::sync::Mutex;
    /// A member compressed: profile, member, gzip bytes, text bytes.
    type Member = (usize, usize, Vec<u8>, u64);
    let done: Mutex<Vec<Member>> = Mutex::new(Vec::new());
    let mut stacks = vec![0u64; measures.len()];
    // Members handed to other threads and not compressed yet: when the
    // producer is faster than they are, it compresses the next one itself,
    // so that the text waiting stays a few members, not the whole profile.
    let pending = std::sync::atomic::AtomicUsize::new(0);
    let most_pending = 2 * rayon::current_num_threads().max(1);
    let compress = |profile: usize, slot: usize, text: Vec<u8>| {
        let member = gzip_member(&text);
        done.lock().unwrap_or_else(|e| e.into_inner()).push((
            profile,
            slot,
            member,
            text.len() as u64,
        ));
    };
    let result = rayon::scope(|scope| {
        let new_buffer = || Vec::with_capacity(MEMBER_TEXT + MEMBER_TEXT / 8);
        // Per profile: the text being filled, and members started.
        let mut texts: Vec<(Vec<u8>, usize)> = measures
            .iter()
            .map(|m| {
                let mut text = new_buffer();
                let _ = crate::folded::write_header(&mut text, m.unit);
                (text, 0)
            })
            .collect();
        let compress = &compress;
        let mut push = |profile: usize, stack: &str, count: u64| {
            let (text, slot) = &mut texts[profile];
            let _ = crate::folded::write_line(text, stack, count, measures[profile].decimals);
            stacks[profile] += 1;
            if text.len() >= MEMBER_TEXT {
                let full = std::mem::replace(text, new_buffer());
                let s = *slot;
                *slot += 1;
                use std::sync::atomic::Ordering::{AcqRel, Acquire};
                if pending.load(Acquire) >= most_pending {
                    compress(profile, s, full);
                } else {
                    pending.fetch_add(1, AcqRel);
                    let pending = &pending;
                    scope.spawn(move |_| {
                        compress(profile, s, full);
                        pending.fetch_sub(1, AcqRel);
                    });
                }
            }
        };
        let result = produce(&mut push);
        for (profile, (text, slot)) in texts.into_iter().enumerate() {
            if !text.is_empty() || slot == 0 {
                scope.spawn(move |_| compress(profile, slot, text));
            }
        }
        result
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_unstable_by_key(|m| (m.0, m.1));
    let mut out: Vec<Compressed> = stacks
        .iter()
        .map(|&n| Compressed {
            stacks: n,
            ..Compressed::default()
        })
        .collect();
    for (profile, _, member, text) in done {
        out[profile].text_bytes += text;
        out[profile].members.push(member);
    }
    (result, out)
}

/// A profile's folded text, compressed (see [`compress_stacks`]), stacks in
/// the order they were first added.
pub fn compress_profile(profile: &Profile) -> Compressed {
    compress_stacks(profile.measure(), profile.len(), |i| {
        Some(profile.stack_at(i))
    })
}

/// How an SVG carries one of its profiles.
#[derive(Debug, Clone, Copy)]
pub enum Carried<'c> {
    /// Embedded.
    Embedded(&'c Compressed),
    /// In the gzip folded file of this name, in the SVG's directory; the
    /// caller writes it ([`Compressed::write_gzip`]).
    Beside(&'c str, &'c Compressed),
    /// Left out: the SVG says so with the profile's size.
    Omitted(&'c Compressed),
}

/// How the `profiles` (role, compressed) of one SVG are carried: embedded if
/// their base64 fits `limit` bytes together (`None`: no limit), otherwise each
/// beside the SVG in the file `beside[i]` names, or left out where it names
/// none.
pub fn carry<'c>(
    profiles: &[(&'c str, &'c Compressed)],
    limit: Option<u64>,
    beside: &'c [Option<String>],
) -> Vec<(&'c str, Carried<'c>)> {
    let size: u64 = profiles.iter().map(|(_, c)| c.base64_len()).sum();
    let fits = limit.is_none_or(|l| size <= l);
    profiles
        .iter()
        .enumerate()
        .map(|(i, &(role, c))| {
            let how = if fits {
                Carried::Embedded(c)
            } else {
                match beside.get(i).and_then(Option::as_deref) {
                    Some(name) => Carried::Beside(name, c),
                    None => Carried::Omitted(c),
                }
            };
            (role, how)
        })
        .collect()
}

/// The `<metadata>` element of the context.
fn context_element(context: &Context) -> String {
    let json = serde_json::to_string(context).unwrap_or_else(|_| "{}".into());
    // `<`, `>` and `&` can only occur inside JSON strings, where their `\u` escapes
    // mean the same: no markup (and no `]]>`) can appear in the document.
    let json = json
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    format!("<metadata id=\"{CONTEXT_ID}\"><![CDATA[{json}]]></metadata>\n")
}

/// Writes the `<metadata>` elements for `context` and `profiles`.
pub fn write_metadata<W: Write + ?Sized>(
    w: &mut W,
    context: &Context,
    profiles: &[(&str, Carried<'_>)],
) -> std::io::Result<()> {
    w.write_all(context_element(context).as_bytes())?;
    for (role, how) in profiles {
        let (encoding, body): (&str, Option<String>) = match how {
            Carried::Embedded(_) => (EMBEDDED, None),
            Carried::Beside(name, _) => (BESIDE, Some(xml_escape(name))),
            Carried::Omitted(c) => (
                OMITTED,
                Some(format!(
                    "{} stacks, {} bytes of folded text, {} compressed: over the embedding limit",
                    c.stacks(),
                    c.text_len(),
                    c.len()
                )),
            ),
        };
        write!(
            w,
            "<metadata id=\"{PROFILE_ID_PREFIX}{role}\" encoding=\"{encoding}\">"
        )?;
        match (how, body) {
            (Carried::Embedded(c), _) => c.write_base64(w)?,
            (_, Some(body)) => w.write_all(body.as_bytes())?,
            _ => {}
        }
        w.write_all(b"</metadata>\n")?;
    }
    Ok(())
}

/// Writes `svg` with the metadata of `context` and `profiles` right after its
/// opening `<svg …>` tag, encoding the profiles as it goes.
pub fn write_svg<W: Write + ?Sized>(
    w: &mut W,
    svg: &[u8],
    context: &Context,
    profiles: &[(&str, Carried<'_>)],
) -> std::io::Result<()> {
    let at = find_svg_open_end(svg).unwrap_or(0);
    w.write_all(&svg[..at])?;
    w.write_all(b"\n")?;
    write_metadata(w, context, profiles)?;
    w.write_all(&svg[at..])
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `<metadata>` elements for `context` and `profiles` (role, profile),
/// all embedded. Profiles are compressed in parallel.
pub fn metadata_xml(context: &Context, profiles: &[(&str, &Profile)]) -> String {
    use rayon::prelude::*;
    let compressed: Vec<Compressed> = profiles
        .par_iter()
        .map(|(_, p)| compress_profile(p))
        .collect();
    let carried: Vec<(&str, Carried<'_>)> = profiles
        .iter()
        .zip(&compressed)
        .map(|((role, _), c)| (*role, Carried::Embedded(c)))
        .collect();
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write_metadata(&mut out, context, &carried);
    String::from_utf8(out).expect("metadata is UTF-8")
}

/// A profile as base64 of gzip of its folded text.
pub fn encode_profile(profile: &Profile) -> String {
    let mut out = Vec::new();
    let _ = compress_profile(profile).write_base64(&mut out);
    String::from_utf8(out).expect("base64 is ASCII")
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

/// Where the opening `<svg …>` tag of `svg` ends (the metadata goes there).
pub fn svg_open_end(svg: &[u8]) -> Option<usize> {
    find_svg_open_end(svg)
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
        let tag_end = rest
            .find('>')
            .ok_or_else(|| corrupt("an unterminated element".into()))?;
        let body_start = tag_end + 1;
        let body_end = rest[body_start..]
            .find("</metadata>")
            .ok_or_else(|| corrupt(format!("profile {role:?} is not closed")))?
            + body_start;
        let body = rest[body_start..body_end].trim();
        let encoding = attribute(&rest[..tag_end], "encoding").unwrap_or(EMBEDDED);
        let profile = match encoding {
            BESIDE => read_beside(path, &role, &xml_unescape(body))?,
            OMITTED => {
                return Err(Error::OmittedProfile {
                    path: path.to_path_buf(),
                    role,
                    note: xml_unescape(body),
                })
            }
            _ => decode_profile(body).map_err(|source| Error::CorruptEmbeddedProfile {
                path: path.to_path_buf(),
                role: role.clone(),
                source,
            })?,
        };
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

/// The value of attribute `name` in a start tag's text.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(&tag[start..end])
}

/// The profile an SVG at `svg` wrote beside itself as `name`: a plain file
/// name in the SVG's directory, never a path elsewhere.
fn read_beside(svg: &Path, role: &str, name: &str) -> Result<Profile, Error> {
    let sidecar = svg.parent().unwrap_or(Path::new("")).join(name);
    let missing = |source: Error| Error::MissingSidecar {
        path: svg.to_path_buf(),
        role: role.to_string(),
        sidecar: sidecar.clone(),
        source: Box::new(source),
    };
    let plain =
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if !plain {
        return Err(Error::CorruptSvgMetadata {
            path: svg.to_path_buf(),
            what: format!("profile {role:?} names {name:?}, which is not a file name"),
        });
    }
    let mut input = Input::open(&sidecar).map_err(missing)?;
    let mut profile = Profile::new();
    profile.read_folded(&mut input).map_err(missing)?;
    Ok(profile)
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
    fn compressing_as_written_is_embedding_compressed() {
        // Several members each (1 MiB of text per member), odd lengths.
        let stacks = |k: usize| -> Vec<(String, u64)> {
            (0..30_000)
                .map(|i| {
                    (
                        format!("main;side_{k};f_{};{}", i % 97, "z".repeat(i % 131)),
                        1 + i as u64 % 9,
                    )
                })
                .collect()
        };
        let (b, a) = (stacks(0), stacks(1));
        let us = Measure {
            unit: crate::Unit::Microseconds,
            decimals: 2,
        };
        let measures = [Measure::default(), us];
        let ((), held) = compress_each_while(&measures, |push| {
            for (k, side) in [&b, &a].iter().enumerate() {
                for (s, c) in side.iter() {
                    push(k, s, *c);
                }
            }
        });
        assert!(held.iter().all(|c| c.members.len() > 2));
        let ctx = Context::new("0.1.0", "diff");
        let mut expected = Vec::new();
        let list = [
            ("before", Carried::Embedded(&held[0])),
            ("after", Carried::Embedded(&held[1])),
        ];
        write_metadata(&mut expected, &ctx, &list).unwrap();
        let mut streamed = Vec::new();
        let text_bytes: u64 = held.iter().map(|c| c.text_len()).sum();
        let sides = [&b, &a];
        write_metadata_compressing(
            &mut streamed,
            &ctx,
            &[("before", measures[0]), ("after", measures[1])],
            &mut |k, push| {
                for (s, c) in sides[k].iter() {
                    push(s, *c);
                }
            },
        )
        .unwrap();
        assert_eq!(streamed, expected);
        // The bound holds, for text that does not compress too.
        let base64: u64 = held.iter().map(|c| c.base64_len()).sum();
        assert!(base64 <= base64_bound(text_bytes));
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..3_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let member = gzip_member(&noise);
        assert!(member.len() as u64 > noise.len() as u64);
        assert!(
            member.len() as u64 / 3 * 4 <= base64_bound(noise.len() as u64),
            "{} {}",
            member.len(),
            noise.len()
        );
    }

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
