//! A writer for the "newc" (SVR4, magic `070701`) cpio format, the format the Linux
//! kernel unpacks as an initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Owns: byte layout of headers, names, padding and the trailer. Must never touch the
//! filesystem: callers hand in bytes and get bytes back.

use std::collections::BTreeSet;

/// File type bits of `st_mode` (see inode(7)).
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Errors building an archive.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpioError {
    /// Paths are stored relative to the archive root, without `.`/`..` parts or NULs.
    #[error("invalid archive path {0:?}")]
    InvalidPath(String),
    /// newc stores sizes in 8 hex digits.
    #[error("entry {0:?} is larger than 4 GiB")]
    TooLarge(String),
    /// An entry with this path was already written.
    #[error("duplicate archive path {0:?}")]
    Duplicate(String),
}

/// Builds one newc archive in memory. Entries are written in the order they are added;
/// parents must be added before children (the kernel creates them in order).
#[derive(Debug, Default)]
pub struct CpioWriter {
    out: Vec<u8>,
    next_inode: u32,
    seen: BTreeSet<String>,
}

impl CpioWriter {
    /// An empty archive.
    pub fn new() -> Self {
        Self {
            out: Vec::new(),
            next_inode: 1,
            seen: BTreeSet::new(),
        }
    }

    /// A directory with permission bits `perm` (e.g. 0o755).
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), CpioError> {
        self.entry(path, S_IFDIR | (perm & 0o7777), 2, 0, &[])
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        self.entry(path, S_IFREG | (perm & 0o7777), 1, 0, data)
    }

    /// A symbolic link whose content is `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        self.entry(path, S_IFLNK | 0o777, 1, 0, target.as_bytes())
    }

    /// A character device node (`major`, `minor`).
    pub fn char_device(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.entry(
            path,
            S_IFCHR | (perm & 0o7777),
            1,
            (major << 16) | (minor & 0xffff),
            &[],
        )
    }

    /// Writes the `TRAILER!!!` entry and returns the archive bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, 1, 0, 0);
        self.out.extend_from_slice(b"TRAILER!!!\0");
        self.pad4();
        self.out
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: u32,
        data: &[u8],
    ) -> Result<(), CpioError> {
        validate_path(path)?;
        let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge(path.into()))?;
        if !self.seen.insert(path.to_string()) {
            return Err(CpioError::Duplicate(path.into()));
        }
        let ino = self.next_inode;
        self.next_inode += 1;
        self.header(path, ino, mode, nlink, size, rdev);
        self.out.extend_from_slice(path.as_bytes());
        self.out.push(0);
        self.pad4();
        self.out.extend_from_slice(data);
        self.pad4();
        Ok(())
    }

    /// 110-byte header: magic + 13 fields of 8 ASCII hex digits
    /// (ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
    /// rdevmajor, rdevminor, namesize including the NUL, check).
    fn header(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, size: u32, rdev: u32) {
        let namesize = name.len() as u32 + 1;
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rdev >> 16,
            rdev & 0xffff,
            namesize,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for field in fields {
            self.out
                .extend_from_slice(format!("{field:08X}").as_bytes());
        }
    }

    fn pad4(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }
}

fn validate_path(path: &str) -> Result<(), CpioError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\0')
        || path
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        Err(CpioError::InvalidPath(path.into()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(archive: &[u8], entry_offset: usize, index: usize) -> u32 {
        let start = entry_offset + 6 + index * 8;
        let text = std::str::from_utf8(&archive[start..start + 8]).expect("hex");
        u32::from_str_radix(text, 16).expect("hex")
    }

    #[test]
    fn file_entry_layout_is_newc() {
        let mut w = CpioWriter::new();
        w.file("init", 0o755, b"hello").expect("file");
        let a = w.finish();
        assert_eq!(&a[..6], b"070701");
        assert_eq!(field(&a, 0, 1), S_IFREG | 0o755);
        assert_eq!(field(&a, 0, 6), 5, "filesize");
        assert_eq!(field(&a, 0, 11), 5, "namesize includes NUL");
        // 110 + "init\0" = 115, padded to 116; data at 116..121, padded to 124.
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(&a[116..121], b"hello");
        assert_eq!(&a[124..130], b"070701", "trailer starts 4-aligned");
        assert_eq!(&a[124 + 110..124 + 121], b"TRAILER!!!\0");
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn device_and_symlink_fields() {
        let mut w = CpioWriter::new();
        w.char_device("console", 0o600, 5, 1).expect("dev");
        let a = w.finish();
        assert_eq!(field(&a, 0, 9), 5);
        assert_eq!(field(&a, 0, 10), 1);
        let mut w = CpioWriter::new();
        w.symlink("sh", "busybox").expect("link");
        let a = w.finish();
        assert_eq!(field(&a, 0, 1), S_IFLNK | 0o777);
        assert_eq!(field(&a, 0, 6), 7);
    }

    #[test]
    fn rejects_bad_and_duplicate_paths() {
        let mut w = CpioWriter::new();
        assert!(matches!(
            w.dir("/bin", 0o755),
            Err(CpioError::InvalidPath(_))
        ));
        assert!(matches!(
            w.dir("a/../b", 0o755),
            Err(CpioError::InvalidPath(_))
        ));
        w.dir("bin", 0o755).expect("dir");
        assert_eq!(w.dir("bin", 0o755), Err(CpioError::Duplicate("bin".into())));
    }
}
