//! `relais lab run --scenario FILE --report DIR`: the fault bench
//! (`src/lab/README.md`, `docs/lab-guide.md`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

/// `relais lab …`.
#[derive(Subcommand, Debug)]
pub enum LabCmd {
    /// Play a scenario (simulator, proxies, the gateway as a child process) and write the graded report (exit 0 every fault passed, 1 a fault failed, 2 the scenario or the bench is wrong: nothing was graded).
    Run {
        /// The scenario file (TOML).
        #[arg(long)]
        scenario: PathBuf,
        /// Where the report goes: report.json, report.md, report.html, injections.jsonl, gateway.log, work/.
        #[arg(long)]
        report: PathBuf,
        /// The MQTT broker the gateway publishes to and the lab listens on.
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        broker: String,
    },
}

/// Runs `relais lab …`.
pub fn run(cmd: LabCmd) -> ExitCode {
    let LabCmd::Run { scenario, report, broker } = cmd;
    if let Err(e) = crate::lab::Scenario::load(&scenario) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let opts = crate::lab::LabOptions { scenario, report: report.clone(), broker };
    let run = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            r = crate::lab::run(&opts) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => None,
        }
    };
    let Some(outcome) = super::block_on(run) else {
        // Dropping the run stopped the gateway (killed: what it committed is kept), the simulator and the proxies.
        eprintln!("interrupted: the run was stopped before its end; no report was graded (the gateway was stopped)");
        return ExitCode::from(130);
    };
    match outcome {
        Ok(r) => {
            for f in &r.faults {
                let verdict = if f.pass { "pass".to_string() } else { format!("FAIL: {}", f.reason.as_deref().unwrap_or("")) };
                crate::outln!(
                    "#{} {} on {}: detected by {} after {}, recovered after {}, {} lost, {} duplicates: {verdict}",
                    f.index,
                    f.kind,
                    f.target,
                    f.detector.as_deref().unwrap_or("nothing"),
                    crate::lab::report::human_ms(f.time_to_detect_ms),
                    crate::lab::report::human_ms(f.time_to_recover_ms),
                    f.samples_lost,
                    f.duplicates
                );
            }
            for u in &r.unattributed {
                crate::outln!(
                    "no fault explains: {} from {} (detector {}): a false alarm, or a detector tuned too tight",
                    u.kind,
                    u.source,
                    u.detector
                );
            }
            crate::outln!(
                "{}: {} of {} faults passed{}; report in {}",
                r.scenario,
                r.faults.len() - r.failed(),
                r.faults.len(),
                match r.unattributed.len() {
                    0 => String::new(),
                    n => format!(", {n} detection(s) no fault explains"),
                },
                report.join("report.html").display()
            );
            if r.pass { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            // The bench could not run (broker, gateway configuration, simulator): not a
            // student's failed fault, so not exit 1.
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
