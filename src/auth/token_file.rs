//! The token file: grant lines vellum itself wrote (the admin token of the
//! first start) or an operator added, one per line, `#` comments allowed.
//! It holds hashes only, yet is written with mode 0600: the subjects and
//! roles are nobody else's business.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::role::{Role, RoleSet};
use super::token::{self, Grant, GrantLineError};

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("token file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {path}, line {line}: {source}")]
    Line {
        path: PathBuf,
        line: usize,
        source: GrantLineError,
    },
    #[error("no random source for a new token: {0}")]
    Random(#[from] openssl::error::ErrorStack),
}

/// The grants in `path`; none when the file does not exist.
pub fn read(path: &Path) -> Result<Vec<Grant>, TokenFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(TokenFileError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(line, l)| {
            Grant::parse(l).map_err(|source| TokenFileError::Line {
                path: path.to_path_buf(),
                line,
                source,
            })
        })
        .collect()
}

/// The first start: a new admin token, its grant line written to `path`
/// (created; an existing file is left alone and `None` returned, so two
/// processes starting at once cannot both mint one). Returns the token,
/// which exists nowhere else: the caller prints it once.
pub fn create_first_admin(path: &Path) -> Result<Option<(String, Grant)>, TokenFileError> {
    let token = token::generate()?;
    let roles = RoleSet::of(&[Role::Admin, Role::Auditor]);
    let line = Grant::line_for(&token, "first-admin", roles);
    let io = |source| TokenFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let text = format!(
        "# vellum bearer tokens: sha256:<hash of the token> <subject> <roles>\n\
         # `vellum token create` prints new lines to add here.\n{line}\n"
    );
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    let grant = Grant::parse(&line).map_err(|source| TokenFileError::Line {
        path: path.to_path_buf(),
        line: 3,
        source,
    })?;
    Ok(Some((token, grant)))
}

/// Appends a grant line to `path` (created with mode 0600 if missing).
pub fn append(path: &Path, line: &str) -> Result<(), TokenFileError> {
    Grant::parse(line).map_err(|source| TokenFileError::Line {
        path: path.to_path_buf(),
        line: 0,
        source,
    })?;
    let io = |source| TokenFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_admin_token_is_written_once_as_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vellum.tokens");
        assert!(read(&path).unwrap().is_empty());
        let (token, grant) = create_first_admin(&path).unwrap().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token));
        assert_eq!(read(&path).unwrap(), vec![grant.clone()]);
        assert!(grant.roles.contains(Role::Admin));
        assert!(create_first_admin(&path).unwrap().is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "# c\n\nnot a grant\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
    }
}
