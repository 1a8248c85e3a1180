//! Reading the files an operator names (components, parameters read from
//! a file, tokens): regular files only, bounded in size, never blocking.
//!
//! A path may be replaced by anything: a FIFO (whose open would block the
//! reader until a writer comes), a symlink to `/dev/zero` (endless), a
//! directory, a device whose open does something. What is not a regular
//! file is refused before it is opened; the file is then opened without
//! blocking (nor becoming a controlling terminal) and checked again
//! through the opened descriptor, so what is read is what was checked, and
//! reading stops past the bound whatever the size said.

use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

impl FileError {
    /// Whether reading again cannot help until the path changes (not a
    /// regular file, too large), as opposed to a passing I/O error.
    pub fn is_settled(&self) -> bool {
        !matches!(self, FileError::Io { .. })
    }
}

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// (The I/O error is told in the message, not as a cause, so that a
    /// chain of causes shows it once.)
    #[error("reading {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path} is {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path} is over {max} bytes")]
    TooLarge { path: String, max: u64 },
}

/// The bytes of the regular file at `path` (symlinks followed), at most
/// `max_bytes` of them.
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<Vec<u8>, FileError> {
    let shown = || path.display().to_string();
    let io = |error| FileError::Io { path: shown(), error };
    let regular = |meta: &std::fs::Metadata| match meta.is_file() {
        true => Ok(()),
        false => Err(FileError::NotRegular {
            path: shown(),
            kind: kind_of(&meta.file_type()),
        }),
    };
    regular(&std::fs::metadata(path).map_err(io)?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    regular(&meta)?;
    if meta.len() > max_bytes {
        return Err(FileError::TooLarge {
            path: shown(),
            max: max_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(FileError::TooLarge {
            path: shown(),
            max: max_bytes,
        });
    }
    Ok(bytes)
}

/// As [`read_regular`], as UTF-8 text.
pub fn read_regular_text(path: &Path, max_bytes: u64) -> Result<String, FileError> {
    let bytes = read_regular(path, max_bytes)?;
    String::from_utf8(bytes).map_err(|e| FileError::Io {
        path: path.display().to_string(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")),
    })
}

fn kind_of(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "something else"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a path may be replaced by is refused at once, named, without
    /// blocking or reading without end.
    #[test]
    fn only_regular_files_within_the_bound_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("module.wasm");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_regular(&file, 10).unwrap(), b"0123456789");
        let err = read_regular(&file, 9).unwrap_err().to_string();
        assert!(err.ends_with("module.wasm is over 9 bytes"), "{err}");

        let fifo = dir.path().join("fifo.wasm");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, 0o600.into(), 0).unwrap();
        let err = read_regular(&fifo, 10).unwrap_err().to_string();
        assert!(err.ends_with("fifo.wasm is a FIFO, not a regular file"), "{err}");

        let zero = dir.path().join("zero.wasm");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = read_regular(&zero, 1 << 20).unwrap_err().to_string();
        assert!(
            err.ends_with("zero.wasm is a character device, not a regular file"),
            "{err}"
        );

        let err = read_regular(dir.path(), 10).unwrap_err().to_string();
        assert!(err.ends_with("is a directory, not a regular file"), "{err}");
    }
}
