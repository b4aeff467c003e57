//! Reading the configuration file without trusting what the path points at: a FIFO would block start-up
//! forever and `/dev/zero` would read until memory runs out, so only a regular file of bounded size is
//! read.

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Largest configuration file accepted. The documented example is ~6 KiB; an allow-list of thousands
/// of prefixes still fits many times over.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The text of the regular file at `path`, at most `max` bytes; the error says what is wrong.
pub fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer before we can look at
    // what it is. It has no effect on regular files.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            format!("cannot read the configuration file: {e}; pass an existing file to --config")
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the configuration file: {e}"))?;
    if !meta.is_file() {
        let what = file_kind(&meta);
        return Err(format!(
            "is {what}, not a regular file; pass the path of a TOML file to --config"
        ));
    }
    if meta.len() > max {
        return Err(format!(
            "the file is {} bytes, more than the {max} a configuration file may have; is this the right file?",
            meta.len()
        ));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // Bounded again in case the file grows while it is read.
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the configuration file: {e}"))?;
    if buf.len() as u64 > max {
        return Err(format!(
            "the file grew past {max} bytes while it was read; is this the right file?"
        ));
    }
    String::from_utf8(buf).map_err(|e| {
        format!(
            "the file is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
            e.utf8_error().valid_up_to()
        )
    })
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("enforcer-cfgread-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let d = tmp("fifo");
        let p = d.join("enforcer.toml");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Without O_NONBLOCK and the type check the read would block forever: run it on a thread.
        let (tx, rx) = std::sync::mpsc::channel();
        let p2 = p.clone();
        std::thread::spawn(move || tx.send(read_bounded(&p2, MAX_CONFIG_BYTES)));
        let got = rx.recv_timeout(Duration::from_secs(5));
        // Unblock a reader stuck on the FIFO (only if the check failed) so the thread can end.
        if got.is_err() {
            let _ = std::fs::OpenOptions::new().write(true).open(&p);
        }
        let err = got.expect("reading a FIFO must not block").unwrap_err();
        assert!(
            err.contains("FIFO") && err.contains("not a regular file"),
            "{err}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn devices_and_directories_are_refused() {
        let t = Instant::now();
        let err = read_bounded(Path::new("/dev/zero"), MAX_CONFIG_BYTES).unwrap_err();
        assert!(err.contains("character device"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(2));
        let err = read_bounded(Path::new("/"), MAX_CONFIG_BYTES).unwrap_err();
        assert!(err.contains("directory"), "{err}");
        let err =
            read_bounded(Path::new("/nonexistent/enforcer.toml"), MAX_CONFIG_BYTES).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
    }

    #[test]
    fn size_is_bounded_and_text_must_be_utf8() {
        let d = tmp("size");
        let p = d.join("big.toml");
        std::fs::write(&p, vec![b'#'; 2048]).unwrap();
        let err = read_bounded(&p, 1024).unwrap_err();
        assert!(err.contains("2048 bytes") && err.contains("1024"), "{err}");
        assert_eq!(read_bounded(&p, 4096).unwrap().len(), 2048);
        std::fs::write(&p, b"mode = \"tc\"\n\xff").unwrap();
        let err = read_bounded(&p, 4096).unwrap_err();
        assert!(
            err.contains("not UTF-8") && err.contains("offset 12"),
            "{err}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
