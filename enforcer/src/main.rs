use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = enforcer::cli::Cli::parse();
    if let Err(err) = enforcer::cli::execute(cli) {
        let code = if err.downcast_ref::<enforcer::error::UsageError>().is_some() {
            enforcer::error::EXIT_USAGE
        } else {
            1
        };
        eprintln!("enforcer: {err:#}");
        std::process::exit(code);
    }
}
