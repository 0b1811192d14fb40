//! Deployment uploads: JSON file maps and `.tar.gz` archives, checked
//! entry by entry before anything is stored.
//!
//! Archives are read in memory, never unpacked onto disk: only regular
//! files and directories are accepted; links, devices, absolute paths and
//! `..` are refused; the unpacked size and file count are capped while
//! reading, so a decompression bomb stops at the cap.

use std::collections::BTreeMap;
use std::io::Read;

use kumo_types::{ErrorCode, Limits, validate_relative_path};

use crate::error::{ApiError, human_bytes};

/// One file of an upload.
#[derive(Debug, Clone)]
pub(crate) struct UploadFile {
    pub(crate) path: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) executable: bool,
}

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidFiles, message)
}

fn too_large(limits: &Limits) -> ApiError {
    ApiError::too_large("the deployment, unpacked,", limits.deployment_bytes)
}

fn too_many(limits: &Limits) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "the deployment has more than {} files",
            limits.deployment_files
        ),
    )
}

/// Files given as a JSON map of path → text.
pub(crate) fn from_json(
    files: BTreeMap<String, String>,
    limits: &Limits,
) -> Result<Vec<UploadFile>, ApiError> {
    if files.is_empty() {
        return Err(invalid(
            "'files' is empty; include at least the entrypoint".into(),
        ));
    }
    if files.len() > limits.deployment_files {
        return Err(too_many(limits));
    }
    let mut total = 0usize;
    let mut out = Vec::with_capacity(files.len());
    for (path, text) in files {
        validate_relative_path(&path).map_err(invalid)?;
        total += text.len();
        if total > limits.deployment_bytes {
            return Err(too_large(limits));
        }
        out.push(UploadFile {
            path,
            bytes: text.into_bytes(),
            executable: false,
        });
    }
    check_prefix_clashes(&out)?;
    Ok(out)
}

/// Files from a gzip-compressed tar archive.
pub(crate) fn from_tar_gz(archive: &[u8], limits: &Limits) -> Result<Vec<UploadFile>, ApiError> {
    let decoder = flate2::read::GzDecoder::new(archive);
    // The cap on the decompressed stream: the file cap plus room for tar
    // headers, so a bomb fails fast whatever its headers claim.
    let cap = (limits.deployment_bytes as u64) + (limits.deployment_files as u64 + 16) * 1024;
    let mut tar = tar::Archive::new(decoder.take(cap));
    let entries = tar
        .entries()
        .map_err(|e| invalid(format!("not a .tar.gz archive: {e}")))?;
    let mut files: BTreeMap<String, UploadFile> = BTreeMap::new();
    let mut total = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_error(e, limits))?;
        let kind = entry.header().entry_type();
        let raw_path = entry
            .path()
            .map_err(|e| invalid(format!("archive entry with an unreadable path: {e}")))?
            .to_string_lossy()
            .into_owned();
        let path = raw_path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if raw_path.starts_with('/') {
            return Err(invalid(format!(
                "archive entry '{raw_path}' has an absolute path"
            )));
        }
        if kind.is_dir() {
            if !path.is_empty() {
                validate_relative_path(&path).map_err(invalid)?;
            }
            continue;
        }
        if !kind.is_file() {
            let what = if kind.is_symlink() {
                "a symbolic link"
            } else if kind.is_hard_link() {
                "a hard link"
            } else if kind.is_character_special() || kind.is_block_special() {
                "a device file"
            } else if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_pax_global_extensions()
                || kind.is_pax_local_extensions()
                || kind.is_gnu_longname()
            {
                continue;
            } else {
                "not a regular file"
            };
            return Err(invalid(format!(
                "archive entry '{raw_path}' is {what}; only regular files are accepted"
            )));
        }
        validate_relative_path(&path).map_err(invalid)?;
        if files.len() >= limits.deployment_files {
            return Err(too_many(limits));
        }
        let size = usize::try_from(entry.size()).unwrap_or(usize::MAX);
        if total.saturating_add(size) > limits.deployment_bytes {
            return Err(too_large(limits));
        }
        let mut bytes = Vec::with_capacity(size.min(1024 * 1024));
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| archive_error(e, limits))?;
        total += bytes.len();
        if total > limits.deployment_bytes {
            return Err(too_large(limits));
        }
        let executable = entry
            .header()
            .mode()
            .map(|m| m & 0o111 != 0)
            .unwrap_or(false);
        if files.contains_key(&path) {
            return Err(invalid(format!("archive holds '{path}' twice")));
        }
        files.insert(
            path.clone(),
            UploadFile {
                path,
                bytes,
                executable,
            },
        );
    }
    if files.is_empty() {
        return Err(invalid("the archive holds no files".into()));
    }
    let out: Vec<UploadFile> = files.into_values().collect();
    check_prefix_clashes(&out)?;
    Ok(out)
}

fn archive_error(e: std::io::Error, limits: &Limits) -> ApiError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        // Either truncated, or cut by the decompression cap.
        return invalid(format!(
            "the archive is truncated or unpacks to more than {}",
            human_bytes(limits.deployment_bytes)
        ));
    }
    invalid(format!("unreadable archive: {e}"))
}

/// `a` as a file and `a/b` as another cannot both exist.
fn check_prefix_clashes(files: &[UploadFile]) -> Result<(), ApiError> {
    let paths: std::collections::BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    for file in files {
        let mut prefix = file.path.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if paths.contains(parent) {
                return Err(invalid(format!(
                    "'{parent}' is both a file and a directory"
                )));
            }
            prefix = parent;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        let tar = builder.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar).expect("gz");
        gz.finish().expect("gz")
    }

    fn file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, data)
            .expect("append");
    }

    #[test]
    fn reads_files() {
        let archive = tar_gz(|b| {
            file(b, "main.py", b"x = 1\n");
            file(b, "lib/util.py", b"y = 2\n");
        });
        let files = from_tar_gz(&archive, &Limits::default()).expect("ok");
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "lib/util.py");
    }

    #[test]
    fn refuses_links_and_escapes() {
        let link = tar_gz(|b| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            b.append_link(&mut header, "evil", "/etc/passwd")
                .expect("link");
        });
        let err = from_tar_gz(&link, &Limits::default()).expect_err("symlink");
        assert!(err.message.contains("symbolic link"), "{}", err.message);

        // The tar crate refuses to write '..' itself, so forge the header.
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_entry_type(tar::EntryType::Regular);
        let name = b"../escape.py";
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_cksum();
        let mut raw = header.as_bytes().to_vec();
        raw.extend_from_slice(&[b'x'; 512]);
        raw.extend_from_slice(&[0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &raw).expect("gz");
        let err = from_tar_gz(&gz.finish().expect("gz"), &Limits::default()).expect_err("dotdot");
        assert!(err.message.contains(".."), "{}", err.message);
    }

    #[test]
    fn stops_bombs() {
        let limits = Limits {
            deployment_bytes: 1024 * 1024,
            ..Limits::default()
        };
        let zeros = vec![0u8; 4 * 1024 * 1024];
        let archive = tar_gz(|b| file(b, "big.bin", &zeros));
        assert!(archive.len() < 64 * 1024);
        let err = from_tar_gz(&archive, &limits).expect_err("bomb");
        assert_eq!(err.code, ErrorCode::PayloadTooLarge);
    }

    #[test]
    fn json_files_checked() {
        let mut files = BTreeMap::new();
        files.insert("../x.py".to_string(), String::new());
        assert!(from_json(files, &Limits::default()).is_err());
        let mut files = BTreeMap::new();
        files.insert("a".to_string(), String::new());
        files.insert("a/b".to_string(), String::new());
        assert!(from_json(files, &Limits::default()).is_err());
    }
}
