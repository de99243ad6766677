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

/// How messages name the input at `path` (`-` is [`STDIN_NAME`]).
pub fn display_name(path: &Path) -> String {
    if path == Path::new("-") {
        STDIN_NAME.to_string()
    } else {
        path.display().to_string()
    }
}

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
        read_error(&self.path, self.gzip, source)
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
    /// 1-based number, streaming: lines are handed out of the read buffer, and
    /// copied only when they straddle two reads. Lines that are not UTF-8 are
    /// reported as [`ParseErrorKind::InvalidUtf8`].
    pub fn for_each_line<F>(&mut self, mut f: F) -> Result<(), Error>
    where
        F: FnMut(u64, &str) -> Result<(), Error>,
    {
        let name = self.path.display().to_string();
        self.for_each_line_checked(|line_no, line| match line {
            Ok(line) => f(line_no, line),
            Err(kind) => Err(Error::Parse(ParseError {
                source_name: name.clone(),
                line: line_no,
                kind,
            })),
        })
    }

    /// Like [`Input::for_each_line`], but a line that is not UTF-8 is handed
    /// to `f` as `Err(`[`ParseErrorKind::InvalidUtf8`]`)`, for `f` to decide.
    pub fn for_each_line_checked<F>(&mut self, mut f: F) -> Result<(), Error>
    where
        F: FnMut(u64, Result<&str, ParseErrorKind>) -> Result<(), Error>,
    {
        let Input { path, gzip, reader } = self;
        let mut line_no = 0u64;
        fn decode(bytes: &[u8]) -> Result<&str, ParseErrorKind> {
            std::str::from_utf8(trim_line_end(bytes)).map_err(|_| ParseErrorKind::InvalidUtf8)
        }
        // The start of a line that continues in the next read.
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let buf = match reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(path, *gzip, e)),
            };
            let n = buf.len();
            if n == 0 {
                if !carry.is_empty() {
                    line_no += 1;
                    f(line_no, decode(&carry))?;
                }
                return Ok(());
            }
            let Some(last) = memchr::memrchr(b'\n', buf) else {
                carry.extend_from_slice(buf);
                reader.consume(n);
                continue;
            };
            let mut start = 0;
            if !carry.is_empty() {
                let end = memchr::memchr(b'\n', buf).expect("a newline");
                carry.extend_from_slice(&buf[..end]);
                line_no += 1;
                f(line_no, decode(&carry))?;
                carry.clear();
                start = end + 1;
            }
            // Whole lines: validated at once, then cut at their newlines.
            let lines = &buf[start..last + 1];
            match std::str::from_utf8(lines) {
                Ok(text) => {
                    let mut from = 0;
                    for end in memchr::memchr_iter(b'\n', lines) {
                        line_no += 1;
                        let line = &text[from..end];
                        f(line_no, Ok(line.strip_suffix('\r').unwrap_or(line)))?;
                        from = end + 1;
                    }
                }
                Err(_) => {
                    let mut from = 0;
                    for end in memchr::memchr_iter(b'\n', lines) {
                        line_no += 1;
                        f(line_no, decode(&lines[from..end]))?;
                        from = end + 1;
                    }
                }
            }
            carry.extend_from_slice(&buf[last + 1..]);
            reader.consume(n);
        }
    }
}

/// A line without its `\n` and then a `\r`.
fn trim_line_end(mut bytes: &[u8]) -> &[u8] {
    if let Some(rest) = bytes.strip_suffix(b"\n") {
        bytes = rest;
    }
    if let Some(rest) = bytes.strip_suffix(b"\r") {
        bytes = rest;
    }
    bytes
}

fn read_error(path: &Path, gzip: bool, source: io::Error) -> Error {
    if gzip
        && matches!(
            source.kind(),
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof
        )
    {
        Error::Gzip {
            path: path.to_path_buf(),
            source,
        }
    } else {
        Error::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

// One per output file, so the size of the gzip variant does not matter.
#[allow(clippy::large_enum_variant)]
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
        Output::create_as(path, true)
    }

    /// Starts writing `path` as [`Output::create`] does, but never
    /// compressing: for bytes that are gzip already.
    pub fn create_plain(path: impl AsRef<Path>) -> Result<Output, Error> {
        Output::create_as(path, false)
    }

    fn create_as(path: impl AsRef<Path>, gzip_by_name: bool) -> Result<Output, Error> {
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
        if let Ok(md) = std::fs::metadata(&path) {
            if !md.is_file() {
                // A device, FIFO or socket (`-o /dev/null`, `-o /dev/stdout`):
                // written in place, as a shell's `>` would; renaming a file
                // over it would replace the device node itself.
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(write_err)?;
                let writer = BufWriter::with_capacity(WRITE_CAPACITY, file);
                let sink = if gzip_by_name && is_gzip_path(&path) {
                    Sink::Gzip(GzEncoder::new(writer, Compression::new(6)))
                } else {
                    Sink::Plain(writer)
                };
                return Ok(Output {
                    path,
                    temp: None,
                    sink,
                });
            }
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
            .map_err(|e| match std::fs::metadata(&dir) {
                // The directory itself is missing or unreadable: say so, without
                // the temporary file's name, which would only confuse.
                Err(dir_error) => write_err(dir_error),
                Ok(_) => write_err(e),
            })?;
        let (file, temp_path) = temp.into_parts();
        let writer = BufWriter::with_capacity(WRITE_CAPACITY, file);
        let sink = if gzip_by_name && is_gzip_path(&path) {
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
        let Some(temp) = self.temp else {
            // Written in place (not a regular file): nothing to rename.
            return Ok(());
        };
        set_default_mode(&file);
        file.sync_all().map_err(write_err)?;
        temp.persist(&path).map_err(|e| write_err(e.error))?;
        Ok(())
    }
}

/// Gives the written file the usual mode. On the open file (`fchmod`), never
/// by its path: whoever owns the destination's directory may have replaced
/// the temporary file by a link to another file by now.
#[cfg(unix)]
fn set_default_mode(file: &File) {
    use std::os::unix::fs::PermissionsExt;
    // Temporary files are created 0600; give the result the usual 0644 (less umask
    // is not readable without a syscall dance, and 0644 is what editors produce).
    let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
}

#[cfg(not(unix))]
fn set_default_mode(_file: &File) {}

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

    /// A reader handing out at most `step` bytes a read.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn lines_of(data: &[u8], step: usize) -> Result<Vec<(u64, String)>, Error> {
        let reader = Trickle {
            data: data.to_vec(),
            at: 0,
            step,
        };
        let mut input = Input::from_reader(PathBuf::from("t"), reader)?;
        let mut lines = Vec::new();
        input.for_each_line(|n, l| {
            lines.push((n, l.to_string()));
            Ok(())
        })?;
        Ok(lines)
    }

    #[test]
    fn lines_across_reads() {
        let long = "x".repeat(3000);
        let text = format!("a;b 1\r\n\n\nc 2\n{long} 3\r\r\nd é 4\nlast 5");
        let want: Vec<(u64, String)> = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.strip_suffix('\r').unwrap_or(l).to_string()))
            .collect();
        for step in [1, 2, 3, 7, 64, 1000, 1 << 20] {
            assert_eq!(
                lines_of(text.as_bytes(), step).unwrap(),
                want,
                "step {step}"
            );
            let mut nl = text.clone();
            nl.push('\n');
            assert_eq!(lines_of(nl.as_bytes(), step).unwrap(), want, "step {step}");
        }
        assert!(lines_of(b"", 3).unwrap().is_empty());
        for step in [1, 5, 1 << 20] {
            let e = lines_of(b"a 1\nb 2\nc\xff 3\nd 4\n", step).unwrap_err();
            assert_eq!(
                e.to_string(),
                "t:3: the line is not valid UTF-8",
                "step {step}"
            );
        }
    }

    /// The temporary file swapped for a link to another file: committing
    /// changes that file's mode not (issue 17).
    #[cfg(unix)]
    #[test]
    fn mode_is_set_on_the_open_file_not_by_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other");
        std::fs::write(&other, "mine").unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut out = Output::create(dir.path().join("out.folded")).unwrap();
        out.writer().write_all(b"a 1\n").unwrap();
        let temp = out.temp.as_ref().unwrap().to_path_buf();
        std::fs::remove_file(&temp).unwrap();
        std::os::unix::fs::symlink(&other, &temp).unwrap();
        let _ = out.commit();
        let mode = std::fs::metadata(&other).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "mine");
    }

    /// `-o /dev/null`: the device is written, never replaced by a file.
    #[test]
    fn device_outputs_are_written_in_place() {
        use std::os::unix::fs::FileTypeExt;
        let null = Path::new("/dev/null");
        assert!(std::fs::metadata(null)
            .unwrap()
            .file_type()
            .is_char_device());
        write_atomically(null, |w| w.write_all(b"main 1\n")).unwrap();
        assert!(std::fs::metadata(null)
            .unwrap()
            .file_type()
            .is_char_device());

        // A FIFO: its reader gets the content, and it stays a FIFO.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.folded");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_atomically(&fifo, |w| w.write_all(b"main 1\n")).unwrap();
        assert_eq!(reader.join().unwrap(), b"main 1\n");
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
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
