//! `enforcer detach`: removes every attachment, the map pins and the pin directory. The state
//! database is kept, so a later `enforcer run` restores the operator entries. Refused while a daemon
//! runs the datapath (it would go on answering "blocked" with nothing attached).

use super::entry::{emit, Dirs};
use crate::daemon::lock::PinLock;
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
    // Held while detaching, so no daemon starts on a half-removed datapath.
    let _lock = match PinLock::try_acquire(pin_dir)? {
        Ok(lock) => lock,
        Err(holder) => {
            return super::usage(format!(
                "`enforcer run` ({holder}) is running the datapath pinned at {}: detaching under it would leave it enforcing nothing while it still answers. Stop it first (`systemctl stop enforcer`, or `kill -TERM {}`), then run `enforcer detach`",
                pin_dir.display(),
                holder.pid
            ))
        }
    };
    let report = datapath::detach(pin_dir)?;
    for (iface, kind) in &report.detached {
        emit(format_args!("detached {} from {iface}", kind.as_str()));
    }
    if report.sk_lookup {
        emit(format_args!(
            "detached the notice responder's sk_lookup program"
        ));
    }
    emit(format_args!(
        "removed {} map pins and {}; operator entries stay in {} for the next `enforcer run`",
        report.maps_removed,
        pin_dir.display(),
        args.dirs.state_dir.display()
    ));
    Ok(())
}
