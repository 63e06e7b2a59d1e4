//! `report.md`: the report as a Markdown table, for the students' write-up.

use std::fmt::Write as _;

use super::{Report, human_ms};

/// Renders the Markdown report.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let verdict = if r.pass { "PASS".to_string() } else { format!("FAIL ({} of {} faults)", r.failed(), r.faults.len()) };
    let _ = writeln!(s, "# Lab report: {}\n", r.scenario);
    if !r.description.is_empty() {
        let _ = writeln!(s, "{}\n", r.description.trim());
    }
    let _ = writeln!(s, "- seed: {}", r.seed);
    let _ = writeln!(s, "- time 0: {} (the gateway's first sample); ran {}", r.started_at, human_ms(Some(r.duration_ms as i64)));
    let _ = writeln!(s, "- verdict: **{verdict}**");
    let st = &r.stream;
    let _ = writeln!(
        s,
        "- MQTT stream: {} records ({} samples, {} events), {} seq missing, {} duplicates\n",
        st.received, st.samples, st.events, st.missing, st.duplicates
    );
    s.push_str("| # | kind | target | injected (t) | detected by | time to detect | recovered after | lost | dup | result |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for f in &r.faults {
        let result = if f.pass { "pass".to_string() } else { format!("**FAIL**: {}", f.reason.as_deref().unwrap_or("")) };
        let _ = writeln!(
            s,
            "| {} | `{}` | `{}` | {} | {} | {} | {} | {} | {} | {} |",
            f.index,
            f.kind,
            f.target,
            human_ms(Some(f.timeline.injected)),
            f.detector.as_deref().unwrap_or("not detected"),
            human_ms(f.time_to_detect_ms),
            human_ms(f.time_to_recover_ms),
            f.samples_lost,
            f.duplicates,
            result.replace('|', "\\|")
        );
    }
    s.push_str("\n## Expectations\n\n");
    for f in &r.faults {
        let e = match &f.expected {
            None => "none (reported only)".to_string(),
            Some(x) => {
                let mut p = Vec::new();
                match (x.wants_detection(), &x.detector) {
                    (Some(false), _) => p.push("no detection".to_string()),
                    (Some(true), Some(d)) => p.push(format!("detected by `{d}`")),
                    (Some(true), None) => p.push("detected".to_string()),
                    (None, _) => {}
                }
                if let Some(w) = x.detect_within_ms {
                    p.push(format!("within {}", human_ms(Some(w as i64))));
                }
                if let Some(w) = x.recover_within_ms {
                    p.push(format!("recovered within {}", human_ms(Some(w as i64))));
                }
                p.push(format!("at most {} samples lost", x.samples_lost));
                if let Some(d) = x.duplicates {
                    p.push(format!("at most {d} duplicates"));
                }
                p.join(", ")
            }
        };
        let _ = writeln!(s, "{}. `{}` on `{}` ({}): {e}", f.index, f.kind, f.target, f.params);
    }
    if !r.unattributed.is_empty() {
        s.push_str("\n## Detections no fault explains\n\n");
        for u in &r.unattributed {
            let _ = writeln!(s, "- `{}` from {} (detector `{}`)", u.kind, u.source, u.detector);
        }
    }
    s.push_str("\nTimes: injected at t from time 0; time to detect from the injection; recovered after the end of the fault.\n");
    s
}
