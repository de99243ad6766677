//! pprof's `profile.proto` (`perftools.profiles.Profile`): writing a folded
//! profile as one, and reading one back into folded stacks.
//!
//! # What is written
//!
//! - `sample_type` is `samples/count` for a profile of samples; when
//!   [`ExportMeta::period_ns`] is set, a second value `cpu/nanoseconds` = count ×
//!   period follows it (so Pyroscope and `go tool pprof` show CPU time, which
//!   they pick by default as the last value). A profile weighted by time
//!   ([`Unit::Microseconds`]) has one value, `time/microseconds` (or
//!   `time/nanoseconds` when its counts have fractions of a microsecond, up to
//!   three decimals), and no period. pprof's values are whole numbers: other
//!   fractional counts are refused (speedscope keeps them).
//! - One sample per distinct stack, its locations leaf first as pprof wants. A
//!   count that does not fit pprof's signed 64-bit values (or whose CPU time does
//!   not) is split over several samples of the same stack, which every consumer
//!   adds up again; a profile that would need more than a million such extra
//!   samples is refused.
//! - One function and one location per distinct frame name (the location id is
//!   the function id), without addresses or line numbers.
//! - Kernel frames (suffix [`KERNEL_SUFFIX`], `_[k]`) lose the suffix and are
//!   marked the way perf-derived pprof profiles mark them: their location belongs
//!   to a mapping named `[kernel.kallsyms]`. Every other frame belongs to mapping
//!   1, named after [`ExportMeta::name`]. [`read_pprof`] turns kernel-mapped
//!   frames back into `name_[k]`, so a profile round-trips exactly. Other
//!   annotations (`_[j]`, `_[i]`) are kept as part of the name.
//! - `period_type`/`period`: `cpu/nanoseconds` and the period when it is known,
//!   otherwise `samples/count` and 1; `duration_nanos` and `time_nanos` when known
//!   (saturated at `i64::MAX`); comments with the nflame version, the profile's
//!   name and the event.
//! - The string table starts with `""`; strings are deduplicated.
//!
//! # What is read
//!
//! [`read_pprof`] accepts any valid profile, gzip-compressed or not, as Go,
//! pprof, Pyroscope, Parca and perf converters write them. Each sample's stack
//! becomes a folded line (inlined frames expanded, callers first); the count is
//! the sample's value of the first sample type whose unit is `count` (otherwise
//! of `default_sample_type`, otherwise of the last type, as pprof itself chooses).
//! When that type's unit is a time (`nanoseconds`, `microseconds`,
//! `milliseconds`, `seconds`) the profile is weighted by time, in microseconds
//! (nanoseconds keep three decimals); otherwise it counts samples.
//! Frames without a function name are named after their mapping (`[libc.so.6]`),
//! their address (`0x4011d0`) or `[unknown]`; `;` in names becomes `:` and line
//! breaks become spaces, so every name is a valid folded frame.

use std::io::{self, Read, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message as _;
use rustc_hash::FxHashMap;

use super::{writer_name, ExportMeta, Format};
use crate::io::Input;
use crate::unit::{pow10, Count, Unit};
use crate::{Error, Profile, KERNEL_SUFFIX};

/// The mapping name that marks kernel frames.
pub const KERNEL_MAPPING: &str = "[kernel.kallsyms]";

/// At most this many samples beyond one per stack are written to carry counts
/// too large for one sample.
const MAX_EXTRA_SAMPLES: usize = 1 << 20;

/// The name errors of [`read_pprof`] give its input.
const READER_NAME: &str = "<pprof input>";

/// Writes `profile` to `w` as a gzip-compressed `profile.proto`; see the module
/// documentation for what it holds. Errors name the output as
/// `<pprof output of NAME>`; [`super::export_file`] names the file instead.
pub fn write_pprof<W: Write>(profile: &Profile, meta: &ExportMeta, w: W) -> Result<(), Error> {
    write_named(profile, meta, w, &writer_name(Format::Pprof, meta))
}

/// [`write_pprof`] with errors naming `name`.
pub(crate) fn write_named<W: Write>(
    profile: &Profile,
    meta: &ExportMeta,
    w: W,
    name: &Path,
) -> Result<(), Error> {
    let bytes = encode(profile, meta, name)?;
    let write_err = |source: io::Error| Error::Write {
        path: name.to_path_buf(),
        source,
    };
    let mut gz = GzEncoder::new(w, Compression::default());
    gz.write_all(&bytes).map_err(write_err)?;
    gz.finish().and_then(|mut w| w.flush()).map_err(write_err)
}

/// The uncompressed `profile.proto` bytes of `profile`; errors name `name`.
pub(crate) fn encode(profile: &Profile, meta: &ExportMeta, name: &Path) -> Result<Vec<u8>, Error> {
    Ok(build(profile, meta, name)?.encode_to_vec())
}

/// A string table with `""` at index 0 and every other string once.
#[derive(Debug, Default)]
struct Strings {
    table: Vec<String>,
    index: FxHashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        let mut s = Strings::default();
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn build(profile: &Profile, meta: &ExportMeta, name: &Path) -> Result<proto::Profile, Error> {
    let invalid = |what: String| Error::InvalidOption(format!("{}: {what}", name.display()));
    let period = match meta.period_ns {
        None | Some(0) => None,
        Some(p) => Some(i64::try_from(p).map_err(|_| {
            invalid(format!(
                "a sampling period of {p} ns does not fit pprof's signed 64-bit period"
            ))
        })?),
    };
    let unit = profile.unit();
    if unit.is_time() && period.is_some() {
        return Err(invalid(format!(
            "a sampling period turns sample counts into CPU time; this profile is in {unit} already"
        )));
    }
    // Values are whole numbers: the stored counts, or nanoseconds for time
    // with fractions of a microsecond.
    let (type_name, unit_name, multiplier) = match (unit, profile.decimals()) {
        (Unit::Samples, 0) => ("samples", "count", 1),
        (Unit::Microseconds, 0) => ("time", "microseconds", 1),
        (Unit::Microseconds, d @ 1..=3) => ("time", "nanoseconds", pow10(3 - d)),
        (_, d) => {
            return Err(invalid(format!(
                "pprof holds whole numbers and this profile has counts with {d} decimals \
                 (of {unit}); export it as speedscope, which keeps them"
            )))
        }
    };
    let mut strings = Strings::new();
    let samples_type = proto::ValueType {
        r#type: strings.get(type_name),
        unit: strings.get(unit_name),
    };
    let cpu_type = period.map(|_| proto::ValueType {
        r#type: strings.get("cpu"),
        unit: strings.get("nanoseconds"),
    });
    // The largest count one sample can carry, so that its value and its CPU
    // time both fit an i64.
    let chunk = match period {
        Some(p) => i64::MAX as u64 / p as u64,
        None => i64::MAX as u64 / multiplier,
    };

    const MAIN_MAPPING: u64 = 1;
    let mut kernel_mapping: Option<u64> = None;
    let mut location_of: FxHashMap<&str, u64> = FxHashMap::default();
    let mut functions = Vec::new();
    let mut locations = Vec::new();
    let mut samples = Vec::with_capacity(profile.len());
    let mut stack_ids = Vec::new();
    for (stack, count) in profile.sorted() {
        stack_ids.clear();
        for frame in stack.split(';') {
            let id = match location_of.get(frame) {
                Some(&id) => id,
                None => {
                    let id = functions.len() as u64 + 1;
                    let (fname, mapping_id) = match frame.strip_suffix(KERNEL_SUFFIX) {
                        Some(bare) => (bare, *kernel_mapping.get_or_insert(MAIN_MAPPING + 1)),
                        None => (frame, MAIN_MAPPING),
                    };
                    functions.push(proto::Function {
                        id,
                        name: strings.get(fname),
                        ..Default::default()
                    });
                    locations.push(proto::Location {
                        id,
                        mapping_id,
                        line: vec![proto::Line {
                            function_id: id,
                            line: 0,
                        }],
                        ..Default::default()
                    });
                    location_of.insert(frame, id);
                    id
                }
            };
            stack_ids.push(id);
        }
        stack_ids.reverse();
        let mut left = count;
        while left > 0 {
            let c = left.min(chunk);
            left -= c;
            if samples.len() >= profile.len() + MAX_EXTRA_SAMPLES {
                return Err(invalid(format!(
                    "the counts are too large for pprof's signed 64-bit values \
                     (stack {stack:?} has {count} samples)"
                )));
            }
            // The casts are exact: c <= chunk <= i64::MAX / period (or / multiplier).
            let mut value = vec![(c * multiplier) as i64];
            if let Some(p) = period {
                value.push(c as i64 * p);
            }
            samples.push(proto::Sample {
                location_id: stack_ids.clone(),
                value,
                label: Vec::new(),
            });
        }
    }

    let mut mappings = Vec::new();
    if !samples.is_empty() {
        mappings.push(proto::Mapping {
            id: MAIN_MAPPING,
            filename: strings.get(meta.display_name()),
            has_functions: true,
            ..Default::default()
        });
    }
    if let Some(id) = kernel_mapping {
        mappings.push(proto::Mapping {
            id,
            filename: strings.get(KERNEL_MAPPING),
            has_functions: true,
            ..Default::default()
        });
    }

    let mut comment = vec![strings.get(&format!("nflame {}", env!("CARGO_PKG_VERSION")))];
    if !meta.name.is_empty() {
        comment.push(strings.get(&format!("profile: {}", meta.name)));
    }
    if let Some(event) = &meta.event {
        comment.push(strings.get(&format!("event: {event}")));
    }
    let (period_type, period_value) = match (&cpu_type, period) {
        (Some(t), Some(p)) => (t.clone(), p),
        _ => (samples_type.clone(), 1),
    };
    let mut sample_type = vec![samples_type];
    sample_type.extend(cpu_type);
    Ok(proto::Profile {
        sample_type,
        sample: samples,
        mapping: mappings,
        location: locations,
        function: functions,
        time_nanos: meta.time_ns.map_or(0, saturating_i64),
        duration_nanos: meta.duration_ns.map_or(0, saturating_i64),
        period_type: Some(period_type),
        period: period_value,
        comment,
        string_table: strings.table,
        ..Default::default()
    })
}

/// Reads a `profile.proto` (gzip-compressed or plain) into folded stacks; see
/// the module documentation for how stacks and counts are chosen. A profile
/// without samples gives an empty [`Profile`]. Errors name the input as
/// `<pprof input>`; [`read_pprof_file`] names the file.
pub fn read_pprof<R: Read>(mut r: R) -> Result<Profile, Error> {
    let name = Path::new(READER_NAME);
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes).map_err(|source| Error::Read {
        path: name.to_path_buf(),
        source,
    })?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut plain)
            .map_err(|source| Error::Gzip {
                path: name.to_path_buf(),
                source,
            })?;
        bytes = plain;
    }
    decode(&bytes, name)
}

/// Reads a pprof file (`-` for standard input), gzip-compressed or plain. Like
/// [`Profile::from_path`], a profile without samples is an [`Error::Empty`].
pub fn read_pprof_file(path: impl AsRef<Path>) -> Result<Profile, Error> {
    let mut input = Input::open(path)?;
    let mut bytes = Vec::new();
    if let Err(e) = input.reader().read_to_end(&mut bytes) {
        return Err(input.read_error(e));
    }
    let profile = decode(&bytes, input.path())?;
    if profile.is_empty() {
        return Err(Error::Empty {
            path: input.path().to_path_buf(),
        });
    }
    Ok(profile)
}

/// A frame name made safe for a folded line.
fn folded_name(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

fn decode(bytes: &[u8], name: &Path) -> Result<Profile, Error> {
    let bad = |what: String| Error::Read {
        path: name.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, what),
    };
    let msg = proto::Profile::decode(bytes)
        .map_err(|e| bad(format!("not a pprof profile (profile.proto): {e}")))?;
    // Index 0 means "unset" (it must be "" anyway), even in an empty table.
    let string = |i: i64| -> Result<&str, Error> {
        if i == 0 {
            return Ok("");
        }
        usize::try_from(i)
            .ok()
            .and_then(|i| msg.string_table.get(i))
            .map(String::as_str)
            .ok_or_else(|| {
                bad(format!(
                    "string index {i} is outside the string table ({} strings)",
                    msg.string_table.len()
                ))
            })
    };

    let (value_index, value_unit) = {
        let mut types = Vec::with_capacity(msg.sample_type.len());
        for t in &msg.sample_type {
            types.push((string(t.r#type)?, string(t.unit)?));
        }
        let default_type = string(msg.default_sample_type)?;
        let i = types
            .iter()
            .position(|&(_, unit)| unit == "count")
            .or_else(|| {
                types
                    .iter()
                    .position(|&(t, _)| !default_type.is_empty() && t == default_type)
            })
            .unwrap_or(types.len().saturating_sub(1));
        (i, types.get(i).map_or("", |t| t.1))
    };
    // A time is read in microseconds: (decimals, multiplier) of a value.
    let (unit, decimals, multiplier) = match value_unit {
        "nanoseconds" => (Unit::Microseconds, 3, 1),
        "microseconds" => (Unit::Microseconds, 0, 1),
        "milliseconds" => (Unit::Microseconds, 0, 1_000),
        "seconds" => (Unit::Microseconds, 0, 1_000_000),
        _ => (Unit::Samples, 0, 1),
    };

    // Mapping id -> (is the kernel, the name for frames without a function).
    let mut mappings: FxHashMap<u64, (bool, String)> = FxHashMap::default();
    for m in &msg.mapping {
        let file = string(m.filename)?;
        let kernel = file.starts_with("[kernel") || file == "vmlinux";
        let base = file.rsplit('/').next().unwrap_or(file);
        let label = if base.is_empty() || base.starts_with('[') {
            folded_name(base)
        } else {
            format!("[{}]", folded_name(base))
        };
        mappings.insert(m.id, (kernel, label));
    }
    let mut functions: FxHashMap<u64, String> = FxHashMap::default();
    for f in &msg.function {
        let mut fname = string(f.name)?;
        if fname.is_empty() {
            fname = string(f.system_name)?;
        }
        functions.insert(f.id, folded_name(fname));
    }
    // Location id -> its frames joined root first.
    let mut locations: FxHashMap<u64, String> = FxHashMap::default();
    for loc in &msg.location {
        let (kernel, map_label) = match mappings.get(&loc.mapping_id) {
            Some((k, l)) => (*k, l.as_str()),
            None => (false, ""),
        };
        let mut frames: Vec<String> = Vec::with_capacity(loc.line.len().max(1));
        // line[0] is the innermost inlined function; the last line its caller.
        for line in loc.line.iter().rev() {
            match functions.get(&line.function_id) {
                Some(f) if !f.is_empty() => frames.push(f.clone()),
                _ => frames.push("[unknown]".to_owned()),
            }
        }
        if frames.is_empty() {
            frames.push(if !map_label.is_empty() {
                map_label.to_owned()
            } else if loc.address != 0 {
                format!("0x{:x}", loc.address)
            } else {
                "[unknown]".to_owned()
            });
        }
        if kernel {
            for f in &mut frames {
                if !f.ends_with(KERNEL_SUFFIX) {
                    f.push_str(KERNEL_SUFFIX);
                }
            }
        }
        locations.insert(loc.id, frames.join(";"));
    }

    let mut profile = Profile::with_unit(unit);
    let mut stack = String::new();
    for (n, sample) in msg.sample.iter().enumerate() {
        let Some(&value) = sample.value.get(value_index) else {
            return Err(bad(format!(
                "sample {n} has {} values but the profile declares {} sample types",
                sample.value.len(),
                msg.sample_type.len()
            )));
        };
        let count = u64::try_from(value)
            .map_err(|_| bad(format!("sample {n} has a negative count {value}")))?;
        if count == 0 {
            continue;
        }
        stack.clear();
        for id in sample.location_id.iter().rev() {
            let frames = locations
                .get(id)
                .ok_or_else(|| bad(format!("sample {n} refers to a missing location {id}")))?;
            if !stack.is_empty() {
                stack.push(';');
            }
            stack.push_str(frames);
        }
        if sample.location_id.is_empty() {
            stack.push_str("[unknown]");
        }
        let too_large =
            || bad("the values add up to more than 2^64-1 (a 64-bit counter)".to_owned());
        let value = count.checked_mul(multiplier).ok_or_else(too_large)?;
        let count = Count { value, decimals }.normalized();
        profile.add_count(&stack, count).map_err(|_| too_large())?;
    }
    Ok(profile)
}

/// `profile.proto`'s messages, declared by hand with the schema's field numbers.
mod proto {
    /// `perftools.profiles.Profile`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "7")]
        pub drop_frames: i64,
        #[prost(int64, tag = "8")]
        pub keep_frames: i64,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    /// `perftools.profiles.ValueType`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    /// `perftools.profiles.Sample`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    /// `perftools.profiles.Label`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    /// `perftools.profiles.Mapping`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    /// `perftools.profiles.Location`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
        #[prost(bool, tag = "5")]
        pub is_folded: bool,
    }

    /// `perftools.profiles.Line`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    /// `perftools.profiles.Function`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn roundtrip(p: &Profile, meta: &ExportMeta) -> Profile {
        let mut out = Vec::new();
        write_pprof(p, meta, &mut out).unwrap();
        assert_eq!(&out[..2], &[0x1f, 0x8b]);
        read_pprof(&out[..]).unwrap()
    }

    fn decoded(p: &Profile, meta: &ExportMeta) -> proto::Profile {
        let bytes = encode(p, meta, Path::new("t")).unwrap();
        proto::Profile::decode(&bytes[..]).unwrap()
    }

    #[test]
    fn layout_follows_pprof_conventions() {
        let p = Profile::from_stacks([("main;a;b", 3), ("main;a", 2), ("main;sys_[k]", 1)]);
        let mut meta = ExportMeta::new("demo");
        meta.period_ns = Some(1_000_000);
        meta.event = Some("cpu-clock".into());
        meta.duration_ns = Some(5_000_000_000);
        meta.time_ns = Some(1_700_000_000_000_000_000);
        let m = decoded(&p, &meta);
        let s = |i: i64| m.string_table[i as usize].as_str();
        assert_eq!(m.string_table[0], "");
        let mut uniq = m.string_table.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), m.string_table.len(), "strings are deduplicated");
        let types: Vec<_> = m
            .sample_type
            .iter()
            .map(|t| (s(t.r#type), s(t.unit)))
            .collect();
        assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
        let pt = m.period_type.as_ref().unwrap();
        assert_eq!(
            (s(pt.r#type), s(pt.unit), m.period),
            ("cpu", "nanoseconds", 1_000_000)
        );
        assert_eq!(m.duration_nanos, 5_000_000_000);
        assert_eq!(m.time_nanos, 1_700_000_000_000_000_000);
        let comments: Vec<_> = m.comment.iter().map(|&c| s(c)).collect();
        assert!(comments[0].starts_with("nflame "), "{comments:?}");
        assert!(comments.contains(&"event: cpu-clock"), "{comments:?}");
        // main, a, b, sys: one function and one location each.
        assert_eq!(m.function.len(), 4);
        assert_eq!(m.location.len(), 4);
        let fname = |loc: u64| {
            let f = &m.function[(loc - 1) as usize];
            assert_eq!(f.id, loc);
            s(f.name)
        };
        // Samples are sorted by stack text; location ids are leaf first.
        let stacks: Vec<(Vec<&str>, Vec<i64>)> = m
            .sample
            .iter()
            .map(|x| {
                (
                    x.location_id.iter().map(|&l| fname(l)).collect(),
                    x.value.clone(),
                )
            })
            .collect();
        assert_eq!(
            stacks,
            [
                (vec!["a", "main"], vec![2, 2_000_000]),
                (vec!["b", "a", "main"], vec![3, 3_000_000]),
                (vec!["sys", "main"], vec![1, 1_000_000]),
            ]
        );
        // The kernel frame lost its suffix and sits in the kernel mapping.
        let sys = m.location.iter().find(|l| fname(l.id) == "sys").unwrap();
        let kmap = m.mapping.iter().find(|x| x.id == sys.mapping_id).unwrap();
        assert_eq!(s(kmap.filename), KERNEL_MAPPING);
        let main = m.location.iter().find(|l| fname(l.id) == "main").unwrap();
        assert_eq!(main.mapping_id, 1);
        assert_eq!(s(m.mapping[0].filename), "demo");
    }

    #[test]
    fn without_period_counts_only() {
        let p = Profile::from_stacks([("a;b", 7)]);
        let m = decoded(&p, &ExportMeta::default());
        assert_eq!(m.sample_type.len(), 1);
        assert_eq!(m.sample[0].value, [7]);
        assert_eq!(m.period, 1);
        assert_eq!(m.time_nanos, 0);
        assert!(m.mapping.iter().all(|x| x.id == 1), "no kernel mapping");
    }

    #[test]
    fn roundtrips_odd_profiles() {
        let p = Profile::from_stacks([
            ("naïve;日本語;🔥_[k]", 5),
            ("main;foo_[k]", 1),
            ("main;foo", 2),
            ("x_[j];y_[i];z", 9),
            ("a b;c  d", 4),
        ]);
        let meta = ExportMeta::new("ünïcode");
        assert_eq!(roundtrip(&p, &meta), p);
        let mut timed = meta.clone();
        timed.period_ns = Some(10_101_010);
        assert_eq!(roundtrip(&p, &timed), p);
    }

    #[test]
    fn time_profiles_keep_their_unit() {
        let s = |m: &proto::Profile, i: i64| m.string_table[i as usize].clone();
        let mut p = Profile::with_unit(Unit::Microseconds);
        p.add("nginx;epoll_wait_[k]", 2_500_000);
        p.add("nginx;read_[k]", 40);
        let meta = ExportMeta::new("off-cpu");
        let m = decoded(&p, &meta);
        let types: Vec<(String, String)> = m
            .sample_type
            .iter()
            .map(|t| (s(&m, t.r#type), s(&m, t.unit)))
            .collect();
        assert_eq!(
            types,
            vec![("time".to_string(), "microseconds".to_string())]
        );
        assert_eq!(roundtrip(&p, &meta), p);
        // Fractions of a microsecond travel as nanoseconds, exactly.
        let mut q = Profile::with_unit(Unit::Microseconds);
        q.add_count(
            "a",
            Count {
                value: 15,
                decimals: 1,
            },
        )
        .unwrap();
        q.add("b", 20);
        let m = decoded(&q, &meta);
        assert_eq!(s(&m, m.sample_type[0].unit), "nanoseconds");
        let values: Vec<i64> = m.sample.iter().map(|x| x.value[0]).collect();
        assert_eq!(values, vec![1500, 2000]);
        assert_eq!(roundtrip(&q, &meta), q);
        // A period makes no sense for time; fractional samples do not fit pprof.
        let mut timed = meta.clone();
        timed.period_ns = Some(1_000_000);
        let e = encode(&p, &timed, Path::new("t.pb")).unwrap_err();
        assert!(e.to_string().contains("in microseconds already"), "{e}");
        let mut frac = Profile::new();
        frac.add_count(
            "a",
            Count {
                value: 5,
                decimals: 1,
            },
        )
        .unwrap();
        let e = encode(&frac, &meta, Path::new("t.pb")).unwrap_err();
        assert!(e.to_string().contains("speedscope"), "{e}");
    }

    #[test]
    fn empty_profile_and_empty_frames_do_not_panic() {
        let empty = Profile::new();
        assert_eq!(roundtrip(&empty, &ExportMeta::default()), empty);
        // Folded files cannot hold empty frames, but a Profile built in code can.
        let p = Profile::from_stacks([("", 1), ("a;;b", 2), (";", 3)]);
        let back = roundtrip(&p, &ExportMeta::default());
        assert_eq!(back.total(), p.total());
        assert_eq!(back.get("a;[unknown];b"), 2);
    }

    #[test]
    fn huge_counts_are_split_and_add_up() {
        let p = Profile::from_stacks([("a;b", u64::MAX - 1), ("c", 1)]);
        let m = decoded(&p, &ExportMeta::default());
        // u64::MAX - 1 is exactly two i64::MAX pieces.
        assert_eq!(m.sample.len(), 3);
        assert_eq!(roundtrip(&p, &ExportMeta::default()), p);

        let mut meta = ExportMeta {
            period_ns: Some(1 << 40),
            ..ExportMeta::default()
        };
        let q = Profile::from_stacks([("a", 1 << 30)]);
        let m = decoded(&q, &meta);
        let sum: i64 = m.sample.iter().map(|x| x.value[0]).sum();
        assert_eq!(sum, 1 << 30);
        assert!(m.sample.iter().all(|x| x.value[1] == x.value[0] << 40));
        assert_eq!(roundtrip(&q, &meta), q);

        // Too many pieces: refused with an error, not a huge file or a panic.
        meta.period_ns = Some(i64::MAX as u64);
        let mut out = Vec::new();
        let e = write_pprof(&p, &meta, &mut out).unwrap_err();
        assert!(e.to_string().contains("<pprof output of nflame>"), "{e}");
        meta.period_ns = Some(u64::MAX);
        assert!(write_pprof(&p, &meta, &mut out).is_err());
    }

    #[test]
    fn write_errors_name_the_output() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let p = Profile::from_stacks([("a", 1)]);
        let e = write_pprof(&p, &ExportMeta::new("web"), Broken).unwrap_err();
        assert_eq!(
            crate::error::chain(&e),
            "cannot write <pprof output of web>: disk on fire"
        );
    }

    #[test]
    fn reads_foreign_profiles() {
        // A Go-style CPU profile: two values, inlined frames, an unsymbolized
        // location, a kernel mapping without the suffix, a sample without stack.
        let st = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let m = proto::Profile {
            string_table: st(&[
                "",
                "samples",
                "count",
                "cpu",
                "nanoseconds",
                "main.main",
                "main.inlined",
                "/usr/lib/libc.so.6",
                "do_syscall_64",
                "[kernel.kallsyms]",
                "odd;name\n",
            ]),
            sample_type: vec![
                proto::ValueType { r#type: 1, unit: 2 },
                proto::ValueType { r#type: 3, unit: 4 },
            ],
            default_sample_type: 3,
            mapping: vec![
                proto::Mapping {
                    id: 10,
                    filename: 7,
                    ..Default::default()
                },
                proto::Mapping {
                    id: 11,
                    filename: 9,
                    ..Default::default()
                },
            ],
            function: vec![
                proto::Function {
                    id: 1,
                    name: 5,
                    ..Default::default()
                },
                proto::Function {
                    id: 2,
                    name: 6,
                    ..Default::default()
                },
                proto::Function {
                    id: 3,
                    name: 8,
                    ..Default::default()
                },
                proto::Function {
                    id: 4,
                    name: 0,
                    system_name: 10,
                    ..Default::default()
                },
            ],
            location: vec![
                proto::Location {
                    id: 100,
                    line: vec![
                        proto::Line {
                            function_id: 2,
                            line: 3,
                        },
                        proto::Line {
                            function_id: 1,
                            line: 9,
                        },
                    ],
                    ..Default::default()
                },
                proto::Location {
                    id: 200,
                    mapping_id: 10,
                    address: 0x1234,
                    ..Default::default()
                },
                proto::Location {
                    id: 300,
                    mapping_id: 11,
                    line: vec![proto::Line {
                        function_id: 3,
                        line: 0,
                    }],
                    ..Default::default()
                },
                proto::Location {
                    id: 400,
                    address: 0xbeef,
                    ..Default::default()
                },
                proto::Location {
                    id: 500,
                    line: vec![proto::Line {
                        function_id: 4,
                        line: 0,
                    }],
                    ..Default::default()
                },
            ],
            sample: vec![
                proto::Sample {
                    location_id: vec![300, 200, 100],
                    value: vec![4, 40],
                    label: vec![],
                },
                proto::Sample {
                    location_id: vec![400, 500],
                    value: vec![1, 10],
                    label: vec![],
                },
                proto::Sample {
                    location_id: vec![],
                    value: vec![2, 20],
                    label: vec![],
                },
                proto::Sample {
                    location_id: vec![100],
                    value: vec![0, 0],
                    label: vec![],
                },
            ],
            ..Default::default()
        };
        let p = read_pprof(&m.encode_to_vec()[..]).unwrap();
        assert_eq!(
            p.sorted(),
            [
                ("[unknown]", 2),
                ("main.main;main.inlined;[libc.so.6];do_syscall_64_[k]", 4),
                ("odd:name ;0xbeef", 1),
            ]
        );
    }

    #[test]
    fn bad_input_is_an_error_naming_it() {
        let e = read_pprof(&b"\x1f\x8b\x08garbage"[..]).unwrap_err();
        assert!(matches!(e, Error::Gzip { .. }), "{e:?}");
        assert!(e.to_string().contains(READER_NAME), "{e}");
        let e = read_pprof(&b"\xff\xff\xff\xff"[..]).unwrap_err();
        assert!(
            crate::error::chain(&e).contains("not a pprof profile"),
            "{e:?}"
        );
        // A sample pointing at a location that does not exist.
        let m = proto::Profile {
            string_table: vec![String::new()],
            sample: vec![proto::Sample {
                location_id: vec![9],
                value: vec![1],
                label: vec![],
            }],
            ..Default::default()
        };
        let e = read_pprof(&m.encode_to_vec()[..]).unwrap_err();
        assert!(
            crate::error::chain(&e).contains("missing location 9"),
            "{e:?}"
        );
        // Negative values and out-of-range string indices.
        let mut m2 = m.clone();
        m2.sample[0] = proto::Sample {
            location_id: vec![],
            value: vec![-1],
            label: vec![],
        };
        let e = read_pprof(&m2.encode_to_vec()[..]).unwrap_err();
        assert!(
            crate::error::chain(&e).contains("negative count -1"),
            "{e:?}"
        );
        m2.comment = vec![];
        m2.sample_type = vec![proto::ValueType { r#type: 5, unit: 0 }];
        let e = read_pprof(&m2.encode_to_vec()[..]).unwrap_err();
        assert!(crate::error::chain(&e).contains("string index 5"), "{e:?}");
        // No bytes at all is a valid, empty profile; as a file it is an error.
        assert!(read_pprof(&b""[..]).unwrap().is_empty());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("empty.pb");
        std::fs::write(&f, b"").unwrap();
        let e = read_pprof_file(&f).unwrap_err();
        assert!(matches!(e, Error::Empty { .. }), "{e:?}");
    }

    #[test]
    fn name_for_writer_errors() {
        assert_eq!(
            writer_name(Format::Pprof, &ExportMeta::default()),
            PathBuf::from("<pprof output of nflame>")
        );
    }
}
