//! A function's files, as a deployment receives them: everything under
//! its directory but what `.kumoignore` (gitignore syntax, at the project
//! root and in the function's directory) and the defaults leave out,
//! packed into a `.tar.gz` that is the same for the same files.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The ignore file's name.
pub const IGNORE_FILE: &str = ".kumoignore";

/// Left out of every deployment: version control, local state, caches,
/// local secrets, and the manifest itself.
pub const DEFAULT_IGNORES: &[&str] = &[
    ".git/",
    ".hg/",
    ".kumo/",
    "__pycache__/",
    "*.pyc",
    ".venv/",
    "venv/",
    ".env",
    ".env.*",
    ".DS_Store",
    "kumo.toml",
    ".kumoignore",
];

/// One file to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedFile {
    /// Relative, `/`-separated.
    pub path: String,
    pub bytes: Vec<u8>,
    pub executable: bool,
}

/// The files of `dir` that a deployment gets, sorted by path; ignore
/// rules come from `root` (the project) and `dir`.
pub fn collect(root: &Path, dir: &Path) -> anyhow::Result<Vec<PackedFile>> {
    use std::os::unix::fs::PermissionsExt;
    let mut builder = ignore::gitignore::GitignoreBuilder::new(dir);
    for pattern in DEFAULT_IGNORES {
        builder
            .add_line(None, pattern)
            .with_context(|| format!("ignore pattern {pattern}"))?;
    }
    for at in [root, dir] {
        let file = at.join(IGNORE_FILE);
        if file.is_file()
            && let Some(e) = builder.add(&file)
        {
            anyhow::bail!("{}: {e}", file.display());
        }
    }
    let rules = builder.build().context("reading the ignore rules")?;
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).with_context(|| format!("reading {}", at.display()))? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            let is_dir = kind.is_dir();
            if rules.matched_path_or_any_parents(&path, is_dir).is_ignore() {
                continue;
            }
            if is_dir {
                stack.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                let meta = entry.metadata()?;
                files.push(PackedFile {
                    bytes: std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?,
                    executable: meta.permissions().mode() & 0o111 != 0,
                    path: rel,
                });
            }
            // Links and other kinds are not deployed.
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The files as a `.tar.gz`, with no times or owners, so equal files give
/// equal archives.
pub fn tar_gz(files: &[PackedFile]) -> anyhow::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(file.bytes.len() as u64);
        header.set_mode(if file.executable { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, &file.path, file.bytes.as_slice())
            .with_context(|| format!("packing {}", file.path))?;
    }
    let mut gz = tar.into_inner().context("finishing the archive")?;
    gz.flush()?;
    Ok(gz.finish()?)
}

/// Unpacks an archive from the server into `dir` (regular files only,
/// nothing outside `dir`).
pub fn unpack(archive: &[u8], dir: &Path) -> anyhow::Result<Vec<String>> {
    use std::os::unix::fs::PermissionsExt;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut written = Vec::new();
    for entry in tar.entries().context("reading the archive")? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        if path.starts_with('/') || path.split('/').any(|s| s == ".." || s.is_empty()) {
            anyhow::bail!("the archive holds an unsafe path '{path}'");
        }
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mode = entry.header().mode().unwrap_or(0o644);
        let mut out = std::fs::File::create(&target)
            .with_context(|| format!("writing {}", target.display()))?;
        std::io::copy(&mut entry, &mut out)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode & 0o755))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_rules_and_round_trip() {
        let dir = tempfile::tempdir().expect("a directory");
        let root = dir.path();
        for (path, body) in [
            ("main.py", "x = 1\n"),
            ("lib/util.py", "y = 2\n"),
            ("lib/__pycache__/util.cpython-311.pyc", "junk"),
            ("notes.md", "private"),
            ("data/big.bin", "zzz"),
            (".env", "SECRET=1"),
            ("kumo.toml", "name = \"x\"\n"),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(p, body).expect("write");
        }
        std::fs::write(root.join(IGNORE_FILE), "notes.md\ndata/\n").expect("write");
        let files = collect(root, root).expect("collected");
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["lib/util.py", "main.py"]);
        let a = tar_gz(&files).expect("packed");
        let b = tar_gz(&files).expect("packed");
        assert_eq!(a, b, "the same files, the same archive");
        let out = tempfile::tempdir().expect("a directory");
        let written = unpack(&a, out.path()).expect("unpacked");
        assert_eq!(written, ["lib/util.py", "main.py"]);
        assert_eq!(
            std::fs::read_to_string(out.path().join("lib/util.py")).expect("read"),
            "y = 2\n"
        );
    }
}
