//! `report.html`: one self-contained page (inline CSS, an inline SVG timeline:
//! one lane per target, a bar per fault, marks for detections and recoveries;
//! no script, no external URL).

use std::fmt::Write as _;

use super::{Report, human_ms};

const LANE_H: i64 = 34;
const LEFT: i64 = 190;
const WIDTH: i64 = 1000;

/// Renders the HTML report.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let verdict = if r.pass { "PASS".to_string() } else { format!("FAIL ({} of {} faults)", r.failed(), r.faults.len()) };
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Lab report: {}</title>\n<style>{CSS}</style></head><body>\n",
        esc(&r.scenario)
    );
    let _ = writeln!(s, "<h1>Lab report: {}</h1>", esc(&r.scenario));
    if !r.description.is_empty() {
        let _ = writeln!(s, "<p>{}</p>", esc(r.description.trim()));
    }
    let cls = if r.pass { "pass" } else { "fail" };
    let _ = writeln!(
        s,
        "<p>seed {} · time 0 {} · ran {} · <strong class=\"{cls}\">{}</strong> · stream: {} records, {} seq missing, {} duplicates</p>",
        r.seed,
        esc(&r.started_at),
        human_ms(Some(r.duration_ms as i64)),
        esc(&verdict),
        r.stream.received,
        r.stream.missing,
        r.stream.duplicates
    );
    s.push_str(&svg(r));
    s.push_str("<table><thead><tr><th>#</th><th>kind</th><th>target</th><th>injected (t)</th><th>detector</th><th>time to detect</th><th>recovered after</th><th>lost</th><th>dup</th><th>result</th></tr></thead><tbody>\n");
    for f in &r.faults {
        let (c, res) = if f.pass { ("pass", "pass".to_string()) } else { ("fail", format!("FAIL: {}", f.reason.as_deref().unwrap_or(""))) };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{c}\">{}</td></tr>",
            f.index,
            esc(&f.kind),
            esc(&f.target),
            human_ms(Some(f.timeline.injected)),
            esc(f.detector.as_deref().unwrap_or("not detected")),
            human_ms(f.time_to_detect_ms),
            human_ms(f.time_to_recover_ms),
            f.samples_lost,
            f.duplicates,
            esc(&res)
        );
    }
    s.push_str("</tbody></table>\n");
    if !r.unattributed.is_empty() {
        s.push_str("<h2>Detections no fault explains</h2><ul>\n");
        for u in &r.unattributed {
            let _ =
                writeln!(s, "<li><code>{}</code> from {} (detector <code>{}</code>)</li>", esc(&u.kind), esc(&u.source), esc(&u.detector));
        }
        s.push_str("</ul>\n");
    }
    s.push_str("</body></html>\n");
    s
}

/// The timeline: one lane per target (in order of first appearance), the fault as a bar from
/// injection to clearing, a diamond at detection, a circle at recovery, a time axis in seconds.
fn svg(r: &Report) -> String {
    let mut lanes: Vec<&str> = Vec::new();
    for f in &r.faults {
        if !lanes.contains(&f.target.as_str()) {
            lanes.push(&f.target);
        }
    }
    let span =
        r.faults.iter().flat_map(|f| [Some(f.timeline.injected), f.timeline.cleared, f.timeline.detected, f.timeline.recovered]).flatten();
    let total = span.chain([r.duration_ms as i64]).max().unwrap_or(1).max(1);
    let x = |ms: i64| LEFT + ms.clamp(0, total) * (WIDTH - LEFT - 20) / total;
    let h = LANE_H * lanes.len() as i64 + 50;
    let mut s = format!("<svg width=\"{WIDTH}\" height=\"{h}\" viewBox=\"0 0 {WIDTH} {h}\" role=\"img\" aria-label=\"fault timeline\">\n");
    for (i, lane) in lanes.iter().enumerate() {
        let y = 10 + LANE_H * i as i64;
        let _ = writeln!(s, "<rect x=\"0\" y=\"{y}\" width=\"{WIDTH}\" height=\"{LANE_H}\" class=\"lane{}\"/>", i % 2);
        let _ = writeln!(s, "<text x=\"6\" y=\"{}\" class=\"label\">{}</text>", y + 21, esc(lane));
    }
    for f in &r.faults {
        let lane = lanes.iter().position(|l| *l == f.target).unwrap_or(0) as i64;
        let y = 10 + LANE_H * lane;
        let (x0, x1) = (x(f.timeline.injected), x(f.timeline.cleared.unwrap_or(r.duration_ms as i64)));
        let cls = if f.pass { "bar pass" } else { "bar fail" };
        let _ = writeln!(
            s,
            "<rect x=\"{x0}\" y=\"{}\" width=\"{}\" height=\"{}\" class=\"{cls}\"><title>#{} {} ({})</title></rect>",
            y + 8,
            (x1 - x0).max(3),
            LANE_H - 16,
            f.index,
            esc(&f.kind),
            if f.pass { "pass" } else { "fail" }
        );
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" class=\"kind\">{}</text>", x0 + 3, y + 21, esc(&f.kind));
        if let Some(d) = f.timeline.detected {
            let (cx, cy) = (x(d), y + LANE_H / 2);
            let _ = writeln!(
                s,
                "<path d=\"M{cx} {} L{} {cy} L{cx} {} L{} {cy} Z\" class=\"detect\"><title>detected by {} after {}</title></path>",
                cy - 7,
                cx + 7,
                cy + 7,
                cx - 7,
                esc(f.detector.as_deref().unwrap_or("?")),
                human_ms(f.time_to_detect_ms)
            );
        }
        if let Some(rc) = f.timeline.recovered {
            let _ = writeln!(
                s,
                "<circle cx=\"{}\" cy=\"{}\" r=\"6\" class=\"recover\"><title>recovered {} after the fault's end</title></circle>",
                x(rc),
                y + LANE_H / 2,
                human_ms(f.time_to_recover_ms)
            );
        }
    }
    let axis_y = 10 + LANE_H * lanes.len() as i64 + 6;
    let step = [1_000i64, 5_000, 10_000, 30_000, 60_000, 300_000].into_iter().find(|st| total / st <= 12).unwrap_or(600_000);
    let mut t = 0;
    while t <= total {
        let _ = writeln!(s, "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" class=\"tick\"/>", x(t), axis_y - 4, axis_y + 2);
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" class=\"axis\">{}s</text>", x(t) - 6, axis_y + 16, t / 1000);
        t += step;
    }
    let _ = writeln!(s, "<text x=\"6\" y=\"{}\" class=\"axis\">bar: fault · ◆ detection · ● recovery</text>", axis_y + 16);
    s.push_str("</svg>\n");
    s
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-top:1em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}\
th{background:#f2f2f2}.pass{color:#176f2c}.fail{color:#b00020;font-weight:bold}\
svg{border:1px solid #ccc;max-width:100%;height:auto}.lane0{fill:#fafafa}.lane1{fill:#f0f0f0}\
.label{font:12px monospace;fill:#333}.kind{font:11px sans-serif;fill:#fff}.bar.pass{fill:#4a7fb5}.bar.fail{fill:#c0392b}\
.detect{fill:#f39c12;stroke:#7a4b00}.recover{fill:#2ecc71;stroke:#145a32}.tick{stroke:#555}.axis{font:11px sans-serif;fill:#555}";

/// Text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}
