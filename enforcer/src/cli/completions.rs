//! `enforcer completions SHELL` and `enforcer manpages DIR`: shell completions and man pages
//! generated from the clap definitions, so they never drift from `--help`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Shell to complete for: bash, zsh, fish (also elvish, powershell).
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "enforcer", &mut std::io::stdout());
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write enforcer.8 and enforcer-<subcommand>.8 into (created if missing).
    pub dir: PathBuf,
}

pub fn execute_man(args: ManArgs) -> anyhow::Result<()> {
    for path in write_man_pages(&args.dir)? {
        super::entry::emit(format_args!("{}", path.display()));
    }
    Ok(())
}

/// Writes `enforcer.8` and one page per visible subcommand (`enforcer-run.8`, ...), section 8
/// (system administration). Returns the files written.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![cmd.clone()];
    pages.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    let mut out = Vec::new();
    for page in pages {
        let man = clap_mangen::Man::new(page)
            .section("8")
            .manual("System Administration");
        let path = man
            .generate_to(dir)
            .with_context(|| format!("writing a man page into {}", dir.display()))?;
        out.push(path);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_name_every_subcommand() {
        let mut cmd = crate::cli::Cli::command();
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "enforcer", &mut buf);
            let text = String::from_utf8(buf).unwrap();
            for sub in ["run", "check-config", "senders", "completions"] {
                assert!(text.contains(sub), "{shell}: {sub} missing");
            }
        }
    }

    #[test]
    fn man_pages_for_every_subcommand() {
        let dir = std::env::temp_dir().join(format!("enforcer-man-{}", std::process::id()));
        let written = write_man_pages(&dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"enforcer.8".to_string()), "{names:?}");
        assert!(names.contains(&"enforcer-run.8".to_string()), "{names:?}");
        assert!(
            names.contains(&"enforcer-check-config.8".to_string()),
            "{names:?}"
        );
        let run = std::fs::read_to_string(dir.join("enforcer-run.8")).unwrap();
        assert!(run.contains(".TH enforcer-run 8"), "{run}");
        assert!(run.contains("iface"), "{run}");
        assert!(!names.iter().any(|n| n.contains("manpages")), "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
