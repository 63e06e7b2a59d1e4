//! A query's rows as text: an aligned table, CSV with a header, or one JSON
//! array (the same rows as `GET /api/query`).

use std::fmt::Write as _;

use super::query::Row;
use super::spec::Format;

/// The rows in `format` (ends with a newline).
pub fn render(rows: &[Row], format: Format) -> anyhow::Result<String> {
    match format {
        Format::Json => Ok(serde_json::to_string_pretty(rows)? + "\n"),
        Format::Csv => csv(rows),
        Format::Table => Ok(table(rows)),
    }
}

fn num(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn cells(r: &Row, quality: bool) -> Vec<String> {
    let mut c = vec![r.device.clone().unwrap_or_default(), r.tag.clone().unwrap_or_default()];
    if quality {
        c.push(r.quality.unwrap_or_default().to_string());
    }
    c.extend([r.bucket.clone(), r.count.to_string(), r.good_count.to_string(), num(r.min), num(r.max), num(r.mean), num(r.last)]);
    c
}

fn header(quality: bool) -> Vec<&'static str> {
    let mut h = vec!["device", "tag"];
    if quality {
        h.push("quality");
    }
    h.extend(["bucket", "count", "good_count", "min", "max", "mean", "last"]);
    h
}

fn csv(rows: &[Row]) -> anyhow::Result<String> {
    let quality = rows.iter().any(|r| r.quality.is_some());
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record(header(quality))?;
    for r in rows {
        w.write_record(cells(r, quality))?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

fn table(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "no data in this window\n".into();
    }
    let quality = rows.iter().any(|r| r.quality.is_some());
    let head: Vec<String> = header(quality).into_iter().map(String::from).collect();
    let body: Vec<Vec<String>> = rows.iter().map(|r| cells(r, quality)).collect();
    let widths: Vec<usize> = (0..head.len()).map(|i| body.iter().chain([&head]).map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for line in [&head].into_iter().chain(&body) {
        let mut l = String::new();
        for (i, (c, w)) in line.iter().zip(&widths).enumerate() {
            // Text left, numbers right.
            let text = i < if quality { 4 } else { 3 };
            let _ = if text { write!(l, "{c:<w$}  ") } else { write!(l, "{c:>w$}  ") };
        }
        out.push_str(l.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row {
            device: Some("pump".into()),
            tag: Some("t".into()),
            quality: None,
            bucket: "2026-12-06T10:00:00Z".into(),
            count: 3,
            good_count: 2,
            min: Some(1.0),
            max: Some(2.5),
            mean: Some(1.75),
            last: None,
        }
    }

    #[test]
    fn formats() {
        let j = render(&[row()], Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v[0]["good_count"], 2);
        assert_eq!(v[0]["last"], serde_json::Value::Null);
        assert!(v[0].get("quality").is_none());
        let c = render(&[row()], Format::Csv).unwrap();
        assert_eq!(c, "device,tag,bucket,count,good_count,min,max,mean,last\npump,t,2026-12-06T10:00:00Z,3,2,1,2.5,1.75,\n");
        let t = render(&[row()], Format::Table).unwrap();
        assert!(t.lines().next().unwrap().starts_with("device  tag  bucket"), "{t}");
        assert_eq!(render(&[], Format::Table).unwrap(), "no data in this window\n");
    }
}
