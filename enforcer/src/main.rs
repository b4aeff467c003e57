use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = enforcer::cli::Cli::parse();
    if let Err(err) = enforcer::cli::execute(cli) {
        let code = enforcer::error::exit_status(&err);
        eprintln!("enforcer: {err:#}");
        std::process::exit(code);
    }
}
