use clap::Parser;

fn main() {
    let cli = enforcer::cli::Cli::parse();
    enforcer::logging::init(cli.log_format);
    if let Err(err) = enforcer::cli::execute(cli) {
        let code = enforcer::error::exit_status(&err);
        eprintln!("enforcer: {err:#}");
        std::process::exit(code);
    }
}
