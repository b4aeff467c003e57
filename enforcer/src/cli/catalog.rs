//! `enforcer catalog check FILE`: validate an operator's Exchange build catalog (the file
//! `classifier.catalog` names) without starting anything.

use std::path::PathBuf;

use crate::classify::{catalog_file, Catalog};
use crate::cli::usage;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Validate a build catalog CSV (the format of enforcer/data/exchange-builds.csv: header
    /// `product,version_label,build,release_date,end_of_support`); every problem is printed as
    /// FILE:LINE: what is wrong. Exit status 0 when valid, 2 otherwise.
    Check {
        /// The catalog file, e.g. /etc/enforcer/exchange-builds.csv.
        file: PathBuf,
    },
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    match args.command {
        Sub::Check { file } => match catalog_file::load(&file) {
            Ok(f) => {
                let n = f.rows.len();
                let replacing = f.replacing;
                let merged = Catalog::with(f.rows);
                println!(
                    "{}: {n} rows valid ({} new builds, {replacing} replacing built-in rows); with it the catalog lists {} builds",
                    file.display(),
                    n - replacing,
                    merged.releases.len()
                );
                Ok(())
            }
            Err(e) => usage(e.to_string()),
        },
    }
}
