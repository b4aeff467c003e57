//! `enforcer detach`: removes every attachment, the map pins and the pin directory. The state
//! database is kept, so a later `enforcer run` restores the operator entries.

use super::entry::{emit, Dirs};
use crate::datapath;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub dirs: Dirs,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let pin_dir = &args.dirs.pin_dir;
    match std::fs::metadata(pin_dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            emit(format_args!(
                "nothing to detach: {} does not exist",
                pin_dir.display()
            ));
            return Ok(());
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return super::usage(format!(
                "permission denied reading {}: run `enforcer detach` as root",
                pin_dir.display()
            ));
        }
        Err(e) => return Err(e.into()),
    }
    let report = datapath::detach(pin_dir)?;
    for (iface, kind) in &report.detached {
        emit(format_args!("detached {} from {iface}", kind.as_str()));
    }
    emit(format_args!(
        "removed {} map pins and {}; operator entries stay in {} for the next `enforcer run`",
        report.maps_removed,
        pin_dir.display(),
        args.dirs.state_dir.display()
    ));
    Ok(())
}
