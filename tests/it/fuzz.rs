//! Never panic on input: random bytes and the corpus in `tests/corpus/` fed
//! to the CSV, JSON and JSON Lines readers, strict and lenient.

use proptest::prelude::*;

use relais::parse::spec::Format;

use crate::parse::{run, spec};

fn specs() -> Vec<relais::parse::ParseSpec> {
    vec![
        spec("format = \"csv\""),
        spec(
            "format = \"csv\"\npolicy = \"lenient\"\ndelimiter = \";\"\ndecimal = \",\"\ntimestamp_column = \"ts\"\ntimezone = \"Europe/Paris\"",
        ),
        spec("format = \"csv\"\nlayout = \"long\"\ntimestamp_column = \"ts\"\nquality_column = \"q\""),
        spec("format = \"json\"\ntimestamp_path = \"ts\"\ndevice_path = \"d\""),
        spec(
            "format = \"json\"\npolicy = \"lenient\"\ntimestamp_path = \"/ts\"\nepoch_unit = \"ms\"\nmissing_timestamp = \"receive_time\"",
        ),
        spec("format = \"jsonl\"\nselect = \"listed\"\n[[source.tag]]\nname = \"v\"\npath = \"a.b\"\nscale = 1e300"),
    ]
}

fn all_readers(input: &[u8], specs: &[relais::parse::ParseSpec]) {
    for s in specs {
        for f in [Format::Csv, Format::Json, Format::JsonLines] {
            let (ok, bad) = run(input, f, s);
            // Everything is accounted for: values are finite or bad with a reason.
            for rec in ok {
                for smp in rec {
                    if let relais::model::Value::F64(x) = smp.value {
                        assert!(x.is_finite());
                    }
                    if smp.quality != relais::model::Quality::Good {
                        assert!(smp.reason.is_some());
                    }
                }
            }
            for q in bad {
                assert!(!q.reason.is_empty());
            }
        }
    }
}

#[test]
fn corpus_never_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let specs = specs();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap();
        all_readers(&bytes, &specs);
        n += 1;
    }
    assert!(n >= 10, "corpus files: {n}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        all_readers(&bytes, &specs());
    }

    #[test]
    fn random_csv_like_text_never_panics(lines in proptest::collection::vec("[a-z0-9,;\"\\.\\-: \t\r]{0,40}", 0..20)) {
        let text = format!("ts;a;b\n{}", lines.join("\n"));
        all_readers(text.as_bytes(), &specs());
    }

    #[test]
    fn random_json_like_text_never_panics(s in "[\\{\\}\\[\\]\":,a-z0-9\\.\\-eE ]{0,200}") {
        all_readers(s.as_bytes(), &specs());
    }
}
