//! Reading inputs and writing outputs.
//!
//! Inputs are files, gzip files (recognised by their magic bytes, whatever the
//! name) or `-` for standard input. Outputs are written to a temporary file in
//! the destination's directory and renamed over the destination on
//! [`Output::commit`], so a failure or an interruption never leaves a partial
//! file; a destination ending in `.gz` is gzip-compressed. `-` writes to
//! standard output.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::{Error, ParseError, ParseErrorKind};

const READ_CAPACITY: usize = 256 * 1024;
const WRITE_CAPACITY: usize = 256 * 1024;

/// An opened input: a buffered reader plus what is needed to name it in errors.
pub struct Input {
    path: PathBuf,
    gzip: bool,
    reader: Box<dyn BufRead + Send>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("path", &self.path)
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

/// The name shown for `-`.
pub const STDIN_NAME: &str = "<stdin>";

impl Input {
    /// Opens `path` (`-` for standard input), decompressing gzip transparently.
    pub fn open(path: impl AsRef<Path>) -> Result<Input, Error> {
        let path = path.as_ref();
        if path == Path::new("-") {
            return Self::from_reader(PathBuf::from(STDIN_NAME), io::stdin());
        }
        let file = File::open(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(Error::Read {
                path: path.to_path_buf(),
                source: io::Error::other("is a directory"),
            });
        }
        Self::from_reader(path.to_path_buf(), file)
    }

    /// Wraps any reader, naming it `name` in errors; gzip is detected by magic bytes.
    pub fn from_reader<R: Read + Send + 'static>(name: PathBuf, reader: R) -> Result<Input, Error> {
        let mut buffered = BufReader::with_capacity(READ_CAPACITY, reader);
        let head = buffered.fill_buf().map_err(|source| Error::Read {
            path: name.clone(),
            source,
        })?;
        let gzip = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
        let reader: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(
                READ_CAPACITY,
                MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        Ok(Input {
            path: name,
            gzip,
            reader,
        })
    }

    /// The input's name for messages.
    pub fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// The input's path (`<stdin>` for standard input).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the input is gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Turns a read error into this crate's error, telling gzip damage apart.
    pub fn read_error(&self, source: io::Error) -> Error {
        if self.gzip
            && matches!(
                source.kind(),
                io::ErrorKind::InvalidData
                    | io::ErrorKind::InvalidInput
                    | io::ErrorKind::UnexpectedEof
            )
        {
            Error::Gzip {
                path: self.path.clone(),
                source,
            }
        } else {
            Error::Read {
                path: self.path.clone(),
                source,
            }
        }
    }

    /// Whether the (decompressed) input starts like an SVG or XML document.
    pub fn starts_like_svg(&mut self) -> Result<bool, Error> {
        match self.reader.fill_buf() {
            Ok(head) => Ok(crate::embed::looks_like_svg(head)),
            Err(e) => Err(self.read_error(e)),
        }
    }

    /// The underlying buffered reader (decompressed).
    pub fn reader(&mut self) -> &mut (dyn BufRead + Send) {
        &mut *self.reader
    }

    /// Calls `f` with every line (without its `\n` and a trailing `\r`) and its
    /// 1-based number, streaming with one reused buffer. Lines that are not
    /// UTF-8 are reported as [`ParseErrorKind::InvalidUtf8`].
    pub fn for_each_line<F>(&mut self, mut f: F) -> Result<(), Error>
    where
        F: FnMut(u64, &str) -> Result<(), Error>,
    {
        let mut buf = Vec::with_capacity(1024);
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let n = match self.reader.read_until(b'\n', &mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(e)),
            };
            if n == 0 {
                return Ok(());
            }
            line_no += 1;
            let mut bytes = &buf[..];
            if let Some(rest) = bytes.strip_suffix(b"\n") {
                bytes = rest;
            }
            if let Some(rest) = bytes.strip_suffix(b"\r") {
                bytes = rest;
            }
            let line = std::str::from_utf8(bytes).map_err(|_| {
                Error::Parse(ParseError {
                    source_name: self.name(),
                    line: line_no,
                    kind: ParseErrorKind::InvalidUtf8,
                })
            })?;
            f(line_no, line)?;
        }
    }
}

enum Sink {
    Stdout(BufWriter<io::Stdout>),
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

/// An output being written; nothing appears at the destination until [`Output::commit`].
pub struct Output {
    path: PathBuf,
    temp: Option<tempfile::TempPath>,
    sink: Sink,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Whether `path` asks for gzip compression (its name ends in `.gz`).
pub fn is_gzip_path(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

impl Output {
    /// Starts writing `path` (`-` for standard output); gzip if it ends in `.gz`.
    ///
    /// Fails early (before any work is done) when the destination's directory
    /// does not exist or is not writable.
    pub fn create(path: impl AsRef<Path>) -> Result<Output, Error> {
        let path = path.as_ref().to_path_buf();
        if path == Path::new("-") {
            return Ok(Output {
                path,
                temp: None,
                sink: Sink::Stdout(BufWriter::with_capacity(WRITE_CAPACITY, io::stdout())),
            });
        }
        let write_err = |source: io::Error| Error::Write {
            path: path.clone(),
            source,
        };
        if path.is_dir() {
            return Err(write_err(io::Error::other("is a directory")));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "nflame".into());
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{file_name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(write_err)?;
        let (file, temp_path) = temp.into_parts();
        let writer = BufWriter::with_capacity(WRITE_CAPACITY, file);
        let sink = if is_gzip_path(&path) {
            Sink::Gzip(GzEncoder::new(writer, Compression::new(6)))
        } else {
            Sink::Plain(writer)
        };
        Ok(Output {
            path,
            temp: Some(temp_path),
            sink,
        })
    }

    /// The destination.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer to write the content to.
    pub fn writer(&mut self) -> &mut dyn Write {
        match &mut self.sink {
            Sink::Stdout(w) => w,
            Sink::Plain(w) => w,
            Sink::Gzip(w) => w,
        }
    }

    /// Turns an I/O error met while writing into this crate's error.
    pub fn write_error(&self, source: io::Error) -> Error {
        Error::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// Flushes, syncs and renames the temporary file over the destination.
    pub fn commit(self) -> Result<(), Error> {
        let path = self.path;
        let write_err = |source: io::Error| Error::Write {
            path: path.clone(),
            source,
        };
        let file = match self.sink {
            Sink::Stdout(mut w) => {
                return match w.flush() {
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                    r => r.map_err(write_err),
                };
            }
            Sink::Plain(w) => w.into_inner().map_err(|e| write_err(e.into_error()))?,
            Sink::Gzip(w) => {
                let w = w.finish().map_err(write_err)?;
                w.into_inner().map_err(|e| write_err(e.into_error()))?
            }
        };
        file.sync_all().map_err(write_err)?;
        let temp = self.temp.expect("file outputs have a temporary path");
        set_default_mode(&temp);
        temp.persist(&path).map_err(|e| write_err(e.error))?;
        Ok(())
    }
}

#[cfg(unix)]
fn set_default_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // Temporary files are created 0600; give the result the usual 0644 (less umask
    // is not readable without a syscall dance, and 0644 is what editors produce).
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
}

#[cfg(not(unix))]
fn set_default_mode(_path: &Path) {}

/// Writes `path` atomically with `f` producing the content.
pub fn write_atomically<F>(path: impl AsRef<Path>, f: F) -> Result<(), Error>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let mut out = Output::create(path)?;
    if let Err(e) = f(out.writer()) {
        return Err(out.write_error(e));
    }
    out.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_detected_by_magic_and_roundtrips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.folded.gz");
        write_atomically(&p, |w| w.write_all(b"a;b 1\n")).unwrap();
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(&raw[..2], &[0x1f, 0x8b]);
        // A gzip file without a .gz name is still read as gzip.
        let q = dir.path().join("renamed.txt");
        std::fs::rename(&p, &q).unwrap();
        let mut input = Input::open(&q).unwrap();
        assert!(input.is_gzip());
        let mut lines = Vec::new();
        input
            .for_each_line(|n, l| {
                lines.push((n, l.to_string()));
                Ok(())
            })
            .unwrap();
        assert_eq!(lines, vec![(1, "a;b 1".to_string())]);
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.svg");
        let err = write_atomically(&p, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("boom"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("out.svg"), "{err}");
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let err = Output::create("/nonexistent-nflame-dir/x.svg").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-nflame-dir/x.svg"));
    }

    #[test]
    fn truncated_gzip_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.gz");
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        for i in 0..2000 {
            writeln!(enc, "main;f{i} {i}").unwrap();
        }
        let bytes = enc.finish().unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let mut input = Input::open(&p).unwrap();
        let err = input.for_each_line(|_, _| Ok(())).unwrap_err();
        assert!(matches!(err, Error::Gzip { .. }), "{err:?}");
        assert!(err.to_string().contains("t.gz"));
    }
}
