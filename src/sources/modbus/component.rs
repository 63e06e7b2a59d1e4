//! The Modbus folder's side of the component contract ([`crate::component`]):
//! `[[device]]` with `protocol = "modbus-tcp" | "modbus-rtu" | "modbus-rtu-over-tcp"`.

use std::fmt::Write as _;

use tokio::task::JoinHandle;

use super::config::{ModbusDevice, SingleWrite, Transport, serial_key};
use crate::component::{Claim, Component, Ctx, DescribeCx, Kind, ParseCx, Resource};
use crate::diag::{Diag, Item};
use crate::units::format_duration;

/// The Modbus kind (TCP, RTU, RTU over TCP).
pub struct Modbus;

impl Kind for Modbus {
    type Config = ModbusDevice;
    const TYPES: &'static [&'static str] = &["modbus-tcp", "modbus-rtu", "modbus-rtu-over-tcp"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<ModbusDevice> {
        super::config::parse_device(item, d, cx.key)
    }

    /// One polling task per line (endpoint or serial port) shared by its devices.
    async fn spawn(items: Vec<ModbusDevice>, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        super::poller::spawn_checked(items, ctx.ingest.clone(), ctx.telemetry, ctx.stop.clone(), &ctx.actuators, &ctx.checks)
    }
}

/// `relais check`: the writable tags with their limits and how they are written.
fn describe_writes(m: &ModbusDevice, s: &mut String) {
    let writable: Vec<&super::config::ModbusTag> = m.tags.iter().filter(|t| t.write.is_some()).collect();
    if writable.is_empty() {
        let _ = writeln!(s, "  writable: none");
        return;
    }
    let _ = writeln!(s, "  writable: {} tag(s)", writable.len());
    for t in writable {
        let Some(w) = &t.write else { continue };
        let single = |w: SingleWrite, one: &'static str, many: &'static str| if w == SingleWrite::Single { one } else { many };
        let how = match (t.table, t.bit, t.ty.register_count(), m.writes.mask_write) {
            (super::types::Table::Coil, ..) => single(m.writes.coil, "FC05", "FC15"),
            (_, Some(_), _, true) => "FC22",
            (_, Some(_), _, false) => "read-modify-write",
            (_, None, 1, _) => single(m.writes.register, "FC06", "FC16"),
            _ => "FC16",
        };
        let _ = writeln!(s, "    {} ({} {} {}) by {how}: {}", t.name, t.table, t.address, t.ty, w.describe());
    }
}

impl Component for ModbusDevice {
    fn kind(&self) -> &'static str {
        self.transport.protocol()
    }

    /// The slowest poll interval of its tags.
    fn poll_period(&self) -> Option<std::time::Duration> {
        self.tags.iter().map(|t| t.poll_interval).max()
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// The device line, then its read requests per poll interval (FC, table,
    /// start, count, tags) as the planner makes them.
    fn describe(&self, _cx: &DescribeCx<'_>) -> String {
        let m = self;
        let mut s = format!(
            "device {} ({} {} unit {}, timeout {}, {} tags)\n",
            m.name,
            m.transport.protocol(),
            m.endpoint,
            m.unit_id,
            format_duration(m.timeout),
            m.tags.len()
        );
        match super::poller::plan_device(m) {
            Err(e) => {
                let _ = writeln!(s, "  PLAN ERROR: {e}");
            }
            Ok(groups) => {
                for (iv, reqs) in groups {
                    let _ = writeln!(s, "  every {}: {} request(s)", format_duration(iv), reqs.len());
                    for r in reqs {
                        let names: Vec<&str> = r.tags.iter().map(|i| m.tags[*i].name.as_str()).collect();
                        let _ = writeln!(
                            s,
                            "    FC{} {:<14} start {:>5} count {:>4}  tags: {}",
                            r.table.read_function(),
                            r.table.as_str(),
                            r.start,
                            r.count,
                            names.join(", ")
                        );
                    }
                }
            }
        }
        describe_writes(m, &mut s);
        s
    }

    /// An RTU device claims its serial port with its line settings: devices
    /// on one port must agree on them (then they share the line).
    fn claims(&self) -> Vec<Claim> {
        let Transport::Rtu { port, baud_rate, parity, data_bits, stop_bits } = &self.transport else { return Vec::new() };
        vec![Claim {
            resource: Resource::SerialPort {
                key: serial_key(port),
                port: port.clone(),
                settings: vec![
                    ("baud_rate", baud_rate.to_string()),
                    ("parity", format!("{parity:?}")),
                    ("data_bits", data_bits.to_string()),
                    ("stop_bits", stop_bits.to_string()),
                ],
            },
            owner: format!("device {:?}", self.name),
            key: format!("device {:?} / port", self.name),
            span: None,
        }]
    }

    fn tags(&self) -> Vec<(String, String)> {
        self.tags.iter().map(|t| (self.name.clone(), t.name.clone())).collect()
    }

    /// Devices on one line (endpoint or serial port) share its poller.
    fn restart_group(&self) -> Option<String> {
        Some(self.transport.line_key(&self.endpoint))
    }
}
