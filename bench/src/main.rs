//! `ringsip-load`: see the crate docs (`lib.rs`) and `LOADGEN_CONTRACT.md`.
//! Exit status: 0 when the run completed (even with failed calls), 2 on usage or set-up
//! error (clap exits with 2 on usage errors itself).

use clap::Parser;
use ringsip_bench::cli::{Cli, Command, TransportArg};
use ringsip_bench::ring as driver;

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => driver::run(args).map(|_| ()),
        Command::Uas(args) => driver::run_uas(args).map(|s| {
            eprintln!(
                "ringsip-load uas: INVITE {} ACK {} BYE {} OPTIONS {} REGISTER {} CANCEL {} \
                 other {} responses {} unparsable {}",
                s.invite,
                s.ack,
                s.bye,
                s.options,
                s.register,
                s.cancel,
                s.other_requests,
                s.responses_sent,
                s.unparsable
            );
            if args.transport == TransportArg::Tcp {
                let errors: Vec<String> = s
                    .connection_errors
                    .by_reason()
                    .iter()
                    .map(|(e, n)| format!("{} {n}", e.name()))
                    .collect();
                eprintln!(
                    "ringsip-load uas: connections accepted {} rejected {} errors: {}",
                    s.connections_accepted,
                    s.connections_rejected,
                    errors.join(", ")
                );
            }
        }),
    };
    if let Err(e) = result {
        eprintln!("ringsip-load: {e}");
        std::process::exit(2);
    }
}
