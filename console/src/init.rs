//! `triad init`: writes a documented stack spec to start from — the project's
//! `examples/stack.toml`, every field commented, with the stack's name, region and AZs filled
//! in — and never overwrites a file.

use std::io::Write as _;
use std::path::Path;

use provision::spec::StackSpec;

/// The documented example every new spec starts from.
const EXAMPLE: &str = include_str!("../../examples/stack.toml");
/// The example's own region, replaced by the caller's wherever an ARN names it.
const EXAMPLE_REGION: &str = "eu-west-1";

/// Why `init` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The file is there already; `init` never overwrites.
    #[error(
        "{0} already exists; triad init never overwrites a spec (remove it, or pass --stack with another file)"
    )]
    Exists(String),
    /// The name or region do not make a valid spec.
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The example spec with `name`, `region` and that region's `a`, `b` and `c` AZs, checked by
/// the same parser every command uses.
pub fn render(name: &str, region: &str) -> Result<String, InitError> {
    let mut text = String::with_capacity(EXAMPLE.len());
    for line in EXAMPLE.lines() {
        let line = if line.starts_with("name = ") {
            format!("name = \"{name}\"")
        } else if line.starts_with("region = ") {
            format!("region = \"{region}\"")
        } else if line.starts_with("azs = ") {
            format!("azs = [\"{region}a\", \"{region}b\", \"{region}c\"]")
        } else {
            line.replace(&format!(":{EXAMPLE_REGION}:"), &format!(":{region}:"))
        };
        text.push_str(&line);
        text.push('\n');
    }
    StackSpec::parse(&text).map_err(|e| InitError::Invalid(e.to_string()))?;
    Ok(text)
}

/// Writes the spec to `path`, refusing when anything is there already.
pub fn write(path: &Path, name: &str, region: &str) -> Result<(), InitError> {
    let text = render(name, region)?;
    let shown = path.display().to_string();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => InitError::Exists(shown.clone()),
            _ => InitError::Write {
                path: shown.clone(),
                source,
            },
        })?;
    file.write_all(text.as_bytes())
        .map_err(|source| InitError::Write {
            path: shown,
            source,
        })
}

/// What to say when a command finds no spec at `path`: how to make one.
pub fn missing_spec_hint(path: &Path) -> Option<String> {
    (!path.exists()).then(|| {
        format!(
            "no stack spec at {}: write one with `triad init` (or `triad --stack FILE init`), \
             or point at an example with `--stack examples/stack.toml`",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_carries_the_given_name_region_and_azs() {
        let text = render("orders", "us-east-2").expect("valid");
        let spec = StackSpec::parse(&text).expect("parses");
        assert_eq!(spec.name, "orders");
        assert_eq!(spec.region, "us-east-2");
        assert!(text.contains(r#"azs = ["us-east-2a", "us-east-2b", "us-east-2c"]"#));
        assert!(
            !text.contains("eu-west-1"),
            "the example's region is left: {text}"
        );
        // The documentation comes along.
        assert!(text.lines().filter(|l| l.starts_with('#')).count() > 50);
    }

    #[test]
    fn a_bad_name_is_refused_with_the_spec_rule() {
        let error = render("Orders_Service", "us-east-2").expect_err("invalid name");
        assert!(matches!(error, InitError::Invalid(_)));
        assert!(error.to_string().contains("name"), "{error}");
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stack.toml");
        write(&path, "orders", "us-east-2").expect("first init");
        std::fs::write(&path, "mine").expect("edit");
        let error = write(&path, "other", "us-east-2").expect_err("refused");
        assert!(matches!(error, InitError::Exists(_)), "{error}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "mine");
    }
}
