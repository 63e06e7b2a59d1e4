//! CSV and JSON into samples: field cases B28, B29 and B31, and the parsing
//! rules (decimal separator, timestamps, policies), no I/O.

use std::path::Path;

use relais::config::Config;
use relais::model::{Quality, Sample, Value, format_rfc3339};
use relais::parse::spec::Format;
use relais::parse::{Mapper, ParseSpec, Quarantined, Record};
use relais::sources::SourceConfig;
use relais::sources::file::ingest::parse_input;

/// The parse spec of a `type = "file"` source with `keys`.
pub fn spec(keys: &str) -> ParseSpec {
    let text = format!("[gateway]\nid = \"t\"\n[[source]]\nname = \"src\"\ntype = \"file\"\n{keys}\n");
    let cfg = Config::parse(&text, "src.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    match cfg.sources.into_iter().next().unwrap() {
        SourceConfig::File(f) => f.common.parse,
        _ => unreachable!(),
    }
}

/// Parses `input` with `spec`: (samples per record, quarantined records).
pub fn run(input: &[u8], format: Format, spec: &ParseSpec) -> (Vec<Vec<Sample>>, Vec<Quarantined>) {
    let mut mapper = Mapper::new("src", "dev", &spec.tags);
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    let r = parse_input(input, format, spec, &mut mapper, "input", &mut |r: Record| match r {
        Ok(s) => ok.push(s),
        Err(q) => bad.push(q),
    });
    if let Err(e) = r {
        bad.push(mapper.reject("input", "file".into(), e.to_string(), ""));
    }
    (ok, bad)
}

fn val<'a>(rec: &'a [Sample], tag: &str) -> &'a Sample {
    rec.iter().find(|s| &*s.meta.tag == tag).unwrap_or_else(|| panic!("no tag {tag} in {rec:?}"))
}

const B28: &[u8] =
    b"\xEF\xBB\xBFTimestamp;Current;Voltage;Count\r\n01.11.2017 00:00:02;0,02375;0,19375;12\r\n01.11.2017 00:00:03;0,673;0,62;13\r\n";
const B28_KEYS: &str = "format = \"csv\"\ndelimiter = \";\"\ndecimal = \",\"\ntimestamp_column = \"Timestamp\"\ntimestamp_format = \"dd.MM.yyyy HH:mm:ss\"\ntimezone = \"Europe/Warsaw\"";

#[test]
fn b28_bom_semicolon_decimal_comma() {
    let (ok, bad) = run(B28, Format::Csv, &spec(B28_KEYS));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(ok.len(), 2);
    let tags: Vec<&str> = ok[0].iter().map(|s| &*s.meta.tag).collect();
    assert_eq!(tags, vec!["Current", "Voltage", "Count"], "header names without U+FEFF");
    assert_eq!(format_rfc3339(ok[0][0].ts), "2017-10-31T23:00:02Z");
    assert_eq!(val(&ok[0], "Current").value, Value::F64(0.02375));
    assert_eq!(val(&ok[0], "Voltage").value, Value::F64(0.19375));
    assert_eq!(val(&ok[0], "Count").value, Value::I64(12));
    assert_eq!(val(&ok[1], "Current").value, Value::F64(0.673), "0.673, never 673");
    assert_eq!(val(&ok[1], "Voltage").value, Value::F64(0.62));
    assert_eq!(val(&ok[1], "Count").value, Value::I64(13));
}

#[test]
fn b28_wrong_delimiter_never_shifts_columns() {
    // Same config with ",": the timestamp column cannot be found; reported once.
    let (ok, bad) = run(B28, Format::Csv, &spec(&B28_KEYS.replace("delimiter = \";\"", "delimiter = \"\\t\"")));
    assert!(ok.is_empty());
    assert_eq!(bad.len(), 1);
    assert!(bad[0].reason.contains("timestamp column \"Timestamp\" is not in the header"), "{}", bad[0].reason);
    // Without a timestamp column: header 1 column, rows 3: each row rejected.
    let (ok, bad) = run(B28, Format::Csv, &spec("format = \"csv\"\ndelimiter = \",\"\ndecimal = \".\""));
    assert!(ok.is_empty(), "nothing ingested with shifted columns");
    assert_eq!(bad.len(), 2);
    for q in &bad {
        assert!(q.reason.contains("column count mismatch (header 1, row 3)"), "{}", q.reason);
    }
    assert_eq!((bad[0].location.as_str(), bad[1].location.as_str()), ("line 2", "line 3"));
    // Line numbers stay right with CRLF, blank lines and quoted newlines.
    let (_, bad) = run(b"A;B\r\n1;2\r\n\r\n3;x\r\n5;\"a\r\nb\"\r\n6;y\r\n", Format::Csv, &spec("format = \"csv\"\ndelimiter = \";\""));
    let locs: Vec<&str> = bad.iter().map(|q| q.location.as_str()).collect();
    assert_eq!(locs, vec!["line 4", "line 5", "line 7"]);
}

#[test]
fn b28_a_dot_in_a_decimal_comma_file_is_an_error_for_that_cell() {
    let input = b"Timestamp;Current;Voltage;Count\n01.11.2017 00:00:04;0.5;0,1;14\n";
    let (ok, bad) = run(input, Format::Csv, &spec(B28_KEYS));
    assert!(ok.is_empty());
    assert!(bad[0].reason.contains("column \"Current\"") && bad[0].reason.contains("'.'"), "{}", bad[0].reason);
    assert_eq!(bad[0].raw, "01.11.2017 00:00:04;0.5;0,1;14");
    let (ok, bad) = run(input, Format::Csv, &spec(&format!("{B28_KEYS}\npolicy = \"lenient\"")));
    assert!(bad.is_empty());
    let cur = val(&ok[0], "Current");
    assert_eq!((cur.quality, cur.value.clone()), (Quality::Bad, Value::Null));
    assert!(cur.reason.as_deref().unwrap().starts_with("parse_error"));
    assert_eq!(val(&ok[0], "Voltage").value, Value::F64(0.1));
}

const B29: &str = r#"{"contactor_cycles": 181, "alert_count": 18, "avg_startup_temp": nan, "uptime_s": 52993842}"#;

#[test]
fn b29_bare_nan_strict_rejects_the_frame() {
    let (ok, bad) = run(B29.as_bytes(), Format::Json, &spec("format = \"json\""));
    assert!(ok.is_empty());
    assert_eq!(bad.len(), 1);
    assert!(bad[0].reason.starts_with("parse_error: invalid JSON"), "{}", bad[0].reason);
    assert_eq!(bad[0].location, "byte 65", "byte offset of the bare nan");
    assert_eq!(bad[0].raw, B29);
}

#[test]
fn b29_lenient_keeps_the_other_fields() {
    let lenient = spec("format = \"json\"\npolicy = \"lenient\"");
    for token in ["nan", "NaN", "-nan", "Infinity", "-Infinity", "\"nan\""] {
        let doc = B29.replace("nan", token);
        let (ok, bad) = run(doc.as_bytes(), Format::Json, &lenient);
        assert!(bad.is_empty(), "{token}: {bad:?}");
        let rec = &ok[0];
        assert_eq!(val(rec, "contactor_cycles").value, Value::I64(181));
        assert_eq!(val(rec, "alert_count").value, Value::I64(18));
        assert_eq!(val(rec, "uptime_s").value, Value::I64(52993842));
        assert!(rec.iter().filter(|s| &*s.meta.tag != "avg_startup_temp").all(|s| s.quality == Quality::Good));
        let t = val(rec, "avg_startup_temp");
        assert_eq!((t.quality, t.value.clone()), (Quality::Bad, Value::Null), "{token}");
        assert!(t.reason.as_deref().unwrap().starts_with("non_finite"), "{token}: {:?}", t.reason);
    }
    // The string "nan" in strict mode rejects the record too.
    let (_, bad) = run(B29.replace("nan", "\"nan\"").as_bytes(), Format::Json, &spec("format = \"json\""));
    assert!(bad[0].reason.contains("non-finite"), "{}", bad[0].reason);
}

#[test]
fn b31_nested_timestamp_path_and_epochs() {
    let doc = r#"{"device":"dev1","D1234":{"temperatura":20.200000000000003,"pw":33.5,"fecha":"2025-10-20T11:53:37.637Z"},"estado":"OK"}"#;
    let (ok, bad) =
        run(doc.as_bytes(), Format::Json, &spec("format = \"json\"\ntimestamp_path = \"D1234.fecha\"\ndevice_path = \"device\""));
    assert!(bad.is_empty(), "{bad:?}");
    let rec = &ok[0];
    assert_eq!(rec.len(), 2, "temperatura and pw; text fields are not measurements: {rec:?}");
    let t = val(rec, "D1234.temperatura");
    assert_eq!(t.ts.as_millis(), 1760961217637);
    assert_eq!(t.value, Value::F64(20.200000000000003));
    assert_eq!(&*t.meta.device, "dev1");
    // Epoch milliseconds and seconds.
    let ms = spec("format = \"json\"\ntimestamp_path = \"ts\"\nepoch_unit = \"ms\"");
    let (ok, _) = run(br#"{"ts":1669035610000,"values":{"p1":4.5,"p2":45.0}}"#, Format::Json, &ms);
    assert_eq!(format_rfc3339(ok[0][0].ts), "2022-11-21T13:00:10Z");
    assert_eq!(val(&ok[0], "values.p2").value, Value::F64(45.0));
    let s = spec("format = \"json\"\ntimestamp_path = \"/ts\"\nepoch_unit = \"s\"");
    let (ok, _) = run(br#"{"ts":1669035610,"values":{"p1":4.5}}"#, Format::Json, &s);
    assert_eq!(format_rfc3339(ok[0][0].ts), "2022-11-21T13:00:10Z");
    let (ok, bad) = run(br#"{"ts":1669035610000,"values":{"p1":4.5}}"#, Format::Json, &s);
    assert!(ok.is_empty());
    assert!(bad[0].reason.contains("timestamp unit mismatch"), "{}", bad[0].reason);
    // Microseconds and an explicit null.
    let iso = spec("format = \"json\"\ntimestamp_path = \"timestamp\"");
    let (ok, _) = run(br#"{"value": null, "timestamp": "2021-09-14T06:32:07.507569+00:00"}"#, Format::Json, &iso);
    let v = val(&ok[0], "value");
    assert_eq!(format_rfc3339(v.ts), "2021-09-14T06:32:07.507569Z");
    assert_eq!((v.quality, v.value.clone(), v.reason.as_deref()), (Quality::Bad, Value::Null, Some("null")), "null is bad, never 0");
    // A missing timestamp: rejected, or receive time flagged uncertain if configured.
    let (ok, bad) = run(br#"{"value": 1}"#, Format::Json, &iso);
    assert!(ok.is_empty() && bad[0].reason.contains("no timestamp at /timestamp"));
    let fallback = spec("format = \"json\"\ntimestamp_path = \"timestamp\"\nmissing_timestamp = \"receive_time\"");
    let (ok, _) = run(br#"{"value": 1}"#, Format::Json, &fallback);
    assert_eq!(ok[0][0].quality, Quality::Uncertain);
    assert_eq!(ok[0][0].reason.as_deref(), Some("timestamp_missing"));
}

#[test]
fn json_arrays_lines_listed_tags_and_scaling() {
    let keys = "format = \"jsonl\"\nselect = \"listed\"\n[[source.tag]]\nname = \"temp\"\npath = \"/s/t\"\nunit = \"Cel\"\nscale = 0.1\n[[source.tag]]\nname = \"on\"\npath = \"/on\"";
    let input = b"{\"s\":{\"t\":215},\"on\":true,\"other\":5}\n\n{\"s\":{\"t\":\"-12\"},\"on\":false}\n{broken\n";
    let (ok, bad) = run(input, Format::JsonLines, &spec(keys));
    assert_eq!(ok.len(), 2);
    assert_eq!(val(&ok[0], "temp").value, Value::F64(21.5));
    assert_eq!(val(&ok[0], "temp").meta.unit.as_deref(), Some("Cel"));
    assert_eq!(val(&ok[0], "on").value, Value::Bool(true));
    assert_eq!(ok[0].len(), 2, "unlisted fields are ignored");
    assert_eq!(val(&ok[1], "temp").value, Value::F64(-1.2), "numbers as strings are parsed, scaled without float noise");
    assert_eq!(bad.len(), 1);
    assert!(bad[0].location.starts_with("line 4"), "{}", bad[0].location);
    // An array of objects: one record each.
    let (ok, _) = run(br#"[{"a":1},{"a":2},{"a":3}]"#, Format::Json, &spec("format = \"json\""));
    assert_eq!(ok.len(), 3);
}

#[test]
fn long_layout_and_binary_files() {
    let keys = "format = \"csv\"\nlayout = \"long\"\ntimestamp_column = \"time\"\nunit_column = \"unit\"\nquality_column = \"q\"";
    let input = b"time,tag,value,unit,q\n2026-01-05T10:00:00Z,flow,12.5,m3/h,good\n2026-01-05T10:00:00Z,level,3,m,uncertain\n2026-01-05T10:00:00Z,pressure,,bar,bad\n";
    let (ok, bad) = run(input, Format::Csv, &spec(keys));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(val(&ok[0], "flow").value, Value::F64(12.5));
    assert_eq!(val(&ok[0], "flow").meta.unit.as_deref(), Some("m3/h"));
    assert_eq!(val(&ok[1], "level").quality, Quality::Uncertain);
    assert_eq!(val(&ok[2], "pressure").quality, Quality::Bad);
    // A binary file is reported once, not line by line.
    let mut binary = b"PK\x03\x04".to_vec();
    binary.extend(std::iter::repeat_n(0u8, 5000));
    let (ok, bad) = run(&binary, Format::Csv, &spec("format = \"csv\""));
    assert!(ok.is_empty());
    assert_eq!(bad.len(), 1);
    assert!(bad[0].reason.contains("not a UTF-8 text file"), "{}", bad[0].reason);
}

#[test]
fn delimiter_detection_and_dst() {
    let (ok, _) = run(
        b"time\tA\tB\n2026-10-25 02:30:00\t1\t2\n",
        Format::Csv,
        &spec("format = \"csv\"\ntimestamp_column = \"time\"\ntimezone = \"Europe/Paris\""),
    );
    // The repeated autumn hour: earlier instant by default, flagged uncertain.
    assert_eq!(format_rfc3339(ok[0][0].ts), "2026-10-25T00:30:00Z");
    assert_eq!(ok[0][0].quality, Quality::Uncertain);
    assert_eq!(ok[0][0].reason.as_deref(), Some("ambiguous_local_time"));
    let (ok, bad) = run(
        b"time;A\n2026-03-29 02:30:00;1\n",
        Format::Csv,
        &spec("format = \"csv\"\ntimestamp_column = \"time\"\ntimezone = \"Europe/Paris\""),
    );
    assert!(ok.is_empty());
    assert!(bad[0].reason.contains("does not exist"), "spring gap: {}", bad[0].reason);
    let (_, bad) =
        run(b"time;A\n1989-12-31 23:00:00;1\n", Format::Csv, &spec("format = \"csv\"\ntimestamp_column = \"time\"\ntimezone = \"UTC\""));
    assert!(bad[0].reason.contains("outside 1990..2100"), "{}", bad[0].reason);
}

/// Issue 6: in auto mode a CSV column whose first data row holds text is a
/// text column, skipped (not every row quarantined); text later in a numeric
/// column is an error for that row.
#[test]
fn csv_text_columns_are_skipped_and_text_in_numeric_columns_is_an_error() {
    let input = b"ts,operator,temp\n2026-01-05T10:00:00Z,Anna,21.5\n2026-01-05T10:00:01Z,Bob,21.7\n2026-01-05T10:00:02Z,Anna,ERR\n2026-01-05T10:00:03Z,,22.1\n";
    let keys = "format = \"csv\"\ntimestamp_column = \"ts\"";
    let (ok, bad) = run(input, Format::Csv, &spec(keys));
    assert_eq!(ok.len(), 3, "{bad:?}");
    assert!(ok.iter().flatten().all(|s| &*s.meta.tag == "temp"), "operator is not a tag: {ok:?}");
    assert_eq!(val(&ok[1], "temp").value, Value::F64(21.7));
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].location, "line 4");
    assert!(bad[0].reason.starts_with("parse_error: column \"temp\": \"ERR\" is not a number"), "{}", bad[0].reason);
    // Lenient: that value is a bad sample, the row is kept.
    let (ok, bad) = run(input, Format::Csv, &spec(&format!("{keys}\npolicy = \"lenient\"")));
    assert!(bad.is_empty());
    let t = val(&ok[2], "temp");
    assert_eq!((t.quality, t.value.clone()), (Quality::Bad, Value::Null));
    assert!(t.reason.as_deref().unwrap().starts_with("parse_error"), "{:?}", t.reason);
    // A column named by a [[source.tag]] is never skipped: its text is an error.
    let (ok, bad) = run(input, Format::Csv, &spec(&format!("{keys}\n[[source.tag]]\nname = \"operator\"")));
    assert!(ok.len() == 1 && bad.len() == 3, "{ok:?} {bad:?}");
    assert!(bad[0].reason.contains("column \"operator\": \"Anna\" is not a number"), "{}", bad[0].reason);
    // A malformed number in the first row is not "text": B28 still reports it.
    let (ok, bad) = run(
        b"ts;v\n2026-01-05T10:00:00Z;0.5\n2026-01-05T10:00:01Z;0,5\n",
        Format::Csv,
        &spec("format = \"csv\"\ndelimiter = \";\"\ndecimal = \",\"\ntimestamp_column = \"ts\""),
    );
    assert_eq!((ok.len(), bad.len()), (1, 1));
    assert!(bad[0].reason.contains("'.'"), "{}", bad[0].reason);
}

/// Bugs: a CSV column whose first value is text ("n/a") is numeric once it
/// holds a number (as in JSON): its later numbers are imported, never
/// dropped, and its text cells from then on are reported with line and column.
#[test]
fn csv_text_column_holding_numbers_later_keeps_them() {
    let input = b"ts,v,w\n2026-01-05T10:00:00Z,n/a,1\n2026-01-05T10:00:01Z,5,2\n2026-01-05T10:00:02Z,n/a,3\n2026-01-05T10:00:03Z,7.5,4\n";
    let keys = "format = \"csv\"\ntimestamp_column = \"ts\"";
    let (ok, bad) = run(input, Format::Csv, &spec(keys));
    assert_eq!(ok.len(), 3, "{ok:?} {bad:?}");
    assert_eq!(ok[0].len(), 1, "v is text in the first row: only w {:?}", ok[0]);
    assert_eq!(val(&ok[1], "v").value, Value::I64(5));
    assert_eq!(val(&ok[1], "w").value, Value::I64(2));
    assert_eq!(val(&ok[2], "v").value, Value::F64(7.5));
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].location, "line 4");
    assert!(bad[0].reason.starts_with("parse_error: column \"v\": \"n/a\" is not a number"), "{}", bad[0].reason);
    // Lenient: the text cell is a bad sample, the row is kept.
    let (ok, bad) = run(input, Format::Csv, &spec(&format!("{keys}\npolicy = \"lenient\"")));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(ok.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 2, 2, 2]);
    let v = val(&ok[2], "v");
    assert_eq!((v.quality, v.value.clone()), (Quality::Bad, Value::Null));
    assert_eq!(val(&ok[3], "v").value, Value::F64(7.5));
}

/// Bugs: numbers at the edges of f64. Underflow (`1e-400`) is refused like
/// overflow (`1e400`), never a plausible 0; integers within 64 bits stay
/// exact (`I64`/`U64`, also `u64::MAX` in JSON); a float beyond 2^53 that is
/// not the number written is kept uncertain `precision_loss`, never good.
#[test]
fn numbers_at_the_edges_of_f64_are_exact_refused_or_marked() {
    let keys = "format = \"csv\"\ntimestamp_column = \"ts\"";
    let input = b"ts,a\n2026-01-05T10:00:00Z,1e-400\n2026-01-05T10:00:01Z,1e400\n2026-01-05T10:00:02Z,100000000000000000001\n2026-01-05T10:00:03Z,9007199254740993\n2026-01-05T10:00:04Z,18446744073709551615\n2026-01-05T10:00:05Z,1e20\n";
    let (ok, bad) = run(input, Format::Csv, &spec(keys));
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_eq!(bad[0].location, "line 2");
    assert!(bad[0].reason.contains("\"1e-400\" is too small for a 64-bit float"), "{}", bad[0].reason);
    assert!(bad[1].reason.contains("non-finite"), "{}", bad[1].reason);
    let big = &ok[0][0];
    assert_eq!((big.quality, big.reason.as_deref()), (Quality::Uncertain, Some(relais::parse::number::PRECISION_LOSS)));
    assert_eq!((ok[1][0].quality, ok[1][0].value.clone()), (Quality::Good, Value::I64(9_007_199_254_740_993)));
    assert_eq!((ok[2][0].quality, ok[2][0].value.clone()), (Quality::Good, Value::U64(u64::MAX)));
    assert_eq!((ok[3][0].quality, ok[3][0].value.clone()), (Quality::Good, Value::F64(1e20)), "1e20 is exact");
    let (ok, bad) = run(input, Format::Csv, &spec(&format!("{keys}\npolicy = \"lenient\"")));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!((ok[0][0].quality, ok[0][0].value.clone()), (Quality::Bad, Value::Null), "not 0");
    // JSON: u64::MAX is U64 (strict, and lenient with a bare NaN beside it).
    let (ok, bad) = run(
        br#"{"a": 18446744073709551615, "b": 9007199254740993, "c": 100000000000000000001, "d": "1e-400"}"#,
        Format::Json,
        &spec("format = \"json\"\npolicy = \"lenient\""),
    );
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!((val(&ok[0], "a").quality, val(&ok[0], "a").value.clone()), (Quality::Good, Value::U64(u64::MAX)));
    assert_eq!(val(&ok[0], "b").value, Value::I64(9_007_199_254_740_993));
    assert_eq!(val(&ok[0], "c").quality, Quality::Uncertain);
    assert_eq!((val(&ok[0], "d").quality, val(&ok[0], "d").value.clone()), (Quality::Bad, Value::Null));
    let (ok, bad) = run(br#"{"a": 18446744073709551615, "n": NaN}"#, Format::Json, &spec("format = \"json\"\npolicy = \"lenient\""));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(val(&ok[0], "a").value, Value::U64(u64::MAX));
    let (ok, bad) = run(br#"{"a": 18446744073709551615}"#, Format::Json, &spec("format = \"json\""));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(val(&ok[0], "a").value, Value::U64(u64::MAX));
}

/// Issue 6: in JSON, text in a field that held numbers is an unreadable value
/// (strict: the record is rejected; lenient: a bad sample `parse_error`), an
/// empty string a bad sample `null`, and `"1,5"` a number with `decimal = ","`;
/// a field that only ever held text is not a tag.
#[test]
fn json_strings_in_numeric_fields_never_vanish() {
    let input = b"{\"temp\": 21.5, \"status\": \"OK\"}\n{\"temp\": \"ERR\", \"status\": \"FAULT\"}\n{\"temp\": \"\", \"status\": \"OK\"}\n";
    let (ok, bad) = run(input, Format::JsonLines, &spec("format = \"jsonl\""));
    assert_eq!(ok.len(), 2, "{bad:?}");
    assert!(ok.iter().flatten().all(|s| &*s.meta.tag == "temp"), "status is text: {ok:?}");
    assert_eq!(bad.len(), 1);
    assert!(bad[0].reason.starts_with("parse_error: tag \"temp\": \"ERR\" is not a number"), "{}", bad[0].reason);
    let empty = val(&ok[1], "temp");
    assert_eq!((empty.quality, empty.value.clone(), empty.reason.as_deref()), (Quality::Bad, Value::Null, Some("null: empty string")));
    let (ok, bad) = run(input, Format::JsonLines, &spec("format = \"jsonl\"\npolicy = \"lenient\""));
    assert!(bad.is_empty());
    let err = val(&ok[1], "temp");
    assert_eq!((err.quality, err.value.clone()), (Quality::Bad, Value::Null));
    assert!(err.reason.as_deref().unwrap().starts_with("parse_error"), "{:?}", err.reason);
    // Decimal comma in strings.
    let (ok, bad) = run(br#"{"temp": "1,5", "p": 2}"#, Format::Json, &spec("format = \"json\"\ndecimal = \",\""));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(val(&ok[0], "temp").value, Value::F64(1.5));
    let (_, bad) = run(br#"{"temp": "1.5"}"#, Format::Json, &spec("format = \"json\"\ndecimal = \",\""));
    assert!(bad[0].reason.contains("'.'"), "a dot in a decimal-comma source is reported: {:?}", bad);
}

/// Issue 8: an unreadable timestamp names the key to set, `timestamp_format`.
#[test]
fn unreadable_timestamps_name_the_timestamp_format_key() {
    let (_, bad) = run(b"ts,a\n05/01/2026 10h00,1\n", Format::Csv, &spec("format = \"csv\"\ntimestamp_column = \"ts\""));
    assert!(bad[0].reason.contains("set `timestamp_format`"), "{}", bad[0].reason);
}

/// Issue 9: the strict-mode error for a bare NaN says how to read it.
#[test]
fn b29_strict_error_hints_at_the_lenient_policy() {
    let (_, bad) = run(B29.as_bytes(), Format::Json, &spec("format = \"json\""));
    assert!(bad[0].reason.contains("bare nan is not JSON; policy = \"lenient\" reads it"), "{}", bad[0].reason);
    let (_, bad) = run(b"{\"a\": -Infinity}\n", Format::JsonLines, &spec("format = \"jsonl\""));
    assert!(bad[0].reason.contains("bare -Infinity is not JSON"), "{}", bad[0].reason);
    // Other syntax errors get no such hint.
    let (_, bad) = run(b"{\"a\": tru}\n", Format::JsonLines, &spec("format = \"jsonl\""));
    assert!(!bad[0].reason.contains("lenient"), "{}", bad[0].reason);
}

/// `SSS` in an ICU timestamp format is milliseconds: `.123` must not arrive
/// as 123 ns (it was translated to chrono's `%f`, nanoseconds).
#[test]
fn icu_milliseconds_in_a_csv_timestamp() {
    let csv = b"time;temp\n05.01.2026 10:00:00.123;20,5\n05.01.2026 10:00:00.9;21\n";
    let keys = "format = \"csv\"\ndelimiter = \";\"\ndecimal = \",\"\ntimestamp_column = \"time\"\ntimestamp_format = \"dd.MM.yyyy HH:mm:ss.SSS\"\ntimezone = \"Europe/Paris\"";
    let (ok, bad) = run(csv, Format::Csv, &spec(keys));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(format_rfc3339(ok[0][0].ts), "2026-01-05T09:00:00.123Z");
    assert_eq!(format_rfc3339(ok[1][0].ts), "2026-01-05T09:00:00.900Z");
    // A pattern letter relais does not translate is an error at load, naming it.
    let text = "[gateway]\nid = \"t\"\n[[source]]\nname = \"src\"\ntype = \"file\"\ntimestamp_format = \"dd MMM yyyy\"\n";
    let e = Config::parse(text, "src.toml", Path::new(".")).unwrap_err().to_string();
    assert!(e.contains("src.toml:6") && e.contains("timestamp_format") && e.contains("\"MMM\""), "{e}");
}

/// A device name taken from the data follows the name rules: `a/b`, `a+b`,
/// `""` and the reserved `_relais` from a CSV device column were accepted
/// (two of them landed on one topic, one wrote into the health device).
/// Each such record is quarantined; a 1 MB value quoted in a reason is cut.
#[test]
fn device_names_from_data_are_checked_and_reasons_are_bounded() {
    let csv = b"dev,v\nok,1\na/b,2\na+b,3\n,4\n_relais,5\n";
    let (ok, bad) = run(csv, Format::Csv, &spec("format = \"csv\"\ndevice_column = \"dev\""));
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(&*ok[0][0].meta.device, "ok");
    let locs: Vec<&str> = bad.iter().map(|q| q.location.as_str()).collect();
    assert_eq!(locs, vec!["line 3", "line 4", "line 5", "line 6"]);
    assert!(bad[3].reason.contains("reserved"), "{}", bad[3].reason);
    let json = br#"{"dev":"_relais","v":1}"#;
    let (ok, bad) = run(json, Format::Json, &spec("format = \"json\"\ndevice_path = \"dev\""));
    assert!(ok.is_empty() && bad[0].reason.contains("reserved"), "{bad:?}");
    let huge = format!("a,b\n1,2\n1,{}\n", "9".repeat(1 << 20));
    let (ok, bad) = run(huge.as_bytes(), Format::Csv, &spec("format = \"csv\""));
    assert_eq!(ok.len(), 1);
    assert_eq!(bad.len(), 1, "the row with the huge value is quarantined");
    assert!(bad[0].reason.len() <= relais::parse::REASON_MAX + 3, "reason of {} bytes", bad[0].reason.len());
    assert!(bad[0].raw.len() <= relais::parse::RAW_MAX + 3, "raw of {} bytes", bad[0].raw.len());
}

/// An array in a field that carried numbers was dropped silently (neither a
/// sample nor a quarantined record): strict quarantines the record, lenient
/// makes it a bad sample; an array in a field never numeric is not a tag.
#[test]
fn an_array_where_numbers_came_before_is_an_error_not_silence() {
    let input = b"{\"a\":1,\"b\":2,\"list\":[1,2]}\n{\"a\":[1,2],\"b\":3}\n";
    let (ok, bad) = run(input, Format::JsonLines, &spec("format = \"jsonl\""));
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].len(), 2, "the first record: a and b, the list is not a tag: {:?}", ok[0]);
    assert_eq!(bad.len(), 1);
    assert!(bad[0].reason.contains("\"a\"") && bad[0].reason.contains("not a number"), "{}", bad[0].reason);
    let (ok, bad) = run(input, Format::JsonLines, &spec("format = \"jsonl\"\npolicy = \"lenient\""));
    assert!(bad.is_empty());
    let a = val(&ok[1], "a");
    assert_eq!(a.quality, Quality::Bad);
    assert_eq!(val(&ok[1], "b").value, Value::I64(3));
}

/// Issue 9 item 17: timestamp formats with a UTC offset (`…ssZ`, `…ssXXX`,
/// `%z`, `%:z`, `%#z`) were refused at load ("invalid strftime format")
/// though documented. Each loads in a file source and in an HTTP source, and
/// reads real CSV and JSON lines to the right instant; `auto` reads `+0100`.
#[test]
fn offset_formats_load_in_file_and_http_sources_and_read_real_lines() {
    let cases = [
        ("yyyy-MM-dd'T'HH:mm:ssZ", "2026-01-05T11:00:00+0100"),
        ("yyyy-MM-dd'T'HH:mm:ssXXX", "2026-01-05T11:00:00+01:00"),
        ("yyyy-MM-dd'T'HH:mm:ssXXX", "2026-01-05T10:00:00Z"),
        ("yyyy-MM-dd HH:mm:ss.SSSZ", "2026-01-05 05:00:00.000-0500"),
        ("%Y-%m-%d %H:%M:%S%z", "2026-01-05 11:00:00+0100"),
        ("%Y-%m-%d %H:%M:%S%:z", "2026-01-05 11:00:00+01:00"),
        ("%Y-%m-%dT%H:%M:%S%#z", "2026-01-05T11:00:00+01"),
        ("auto", "2026-01-05T11:00:00+0100"),
        ("rfc3339", "2026-01-05 11:00:00+0100"),
    ];
    for (fmt, text) in cases {
        // No `timezone`: the offset alone must place the instant.
        let keys = format!("timestamp_column = \"ts\"\ntimestamp_path = \"ts\"\ntimestamp_format = \"{fmt}\"");
        let http = format!("[gateway]\nid = \"t\"\n[[source]]\nname = \"h\"\ntype = \"http\"\nallow_anonymous = true\n{keys}\n");
        let cfg = Config::parse(&http, "h.toml", Path::new(".")).unwrap_or_else(|e| panic!("http source, {fmt}: {e}"));
        let SourceConfig::Http(h) = cfg.sources.into_iter().next().unwrap() else { unreachable!() };
        for spec in [spec(&keys), h.common.parse] {
            let csv = format!("ts,temp\n{text},21.5\n");
            let (ok, bad) = run(csv.as_bytes(), Format::Csv, &spec);
            assert!(bad.is_empty(), "{fmt} {text}: {bad:?}");
            assert_eq!(format_rfc3339(ok[0][0].ts), "2026-01-05T10:00:00Z", "{fmt} {text} (CSV)");
            let json = format!("{{\"ts\": \"{text}\", \"temp\": 21.5}}\n");
            let (ok, bad) = run(json.as_bytes(), Format::JsonLines, &spec);
            assert!(bad.is_empty(), "{fmt} {text}: {bad:?}");
            assert_eq!(format_rfc3339(ok[0][0].ts), "2026-01-05T10:00:00Z", "{fmt} {text} (JSON)");
        }
    }
    // What the parser cannot read is still refused at load, naming the key.
    let text = "[gateway]\nid = \"t\"\n[[source]]\nname = \"src\"\ntype = \"file\"\ntimestamp_format = \"%Y-%m-%d %Q\"\n";
    let e = Config::parse(text, "src.toml", Path::new(".")).unwrap_err().to_string();
    assert!(e.contains("src.toml:6") && e.contains("timestamp_format") && e.contains("invalid strftime format"), "{e}");
}
