//! Value codec against golden vectors: every type × byte order, and the
//! Modbus field cases B01, B02, B03, B05, B06 (`../shared/field-cases.md`).

use relais::model::Value;
use relais::sources::modbus::decode::{apply_scale, decode, encode, implausible_float, with_bit};
use relais::sources::modbus::types::{ByteOrder, ByteOrder::*, DataType, DataType::*};

fn f(words: &[u16], ty: DataType, o: ByteOrder) -> f64 {
    match decode(words, ty, o, None).unwrap() {
        Value::F64(x) => x,
        other => panic!("expected a float, got {other:?}"),
    }
}

fn int(words: &[u16], ty: DataType, o: ByteOrder) -> Value {
    decode(words, ty, o, None).unwrap()
}

#[test]
fn b01_float32_word_swapped() {
    assert_eq!(f(&[0x9BD4, 0x436E], F32, CDAB), 238.60870361328125);
    let wrong = f(&[0x9BD4, 0x436E], F32, ABCD);
    assert!((wrong - -3.5116e-22).abs() < 1e-25, "ABCD gives {wrong}");
    // "FLOAT32" that is really a scaled uint32: a distinct type.
    assert_eq!(int(&[0x9BD4, 0x436E], U32, CDAB), Value::U64(1131322324));
    match apply_scale(int(&[0x9BD4, 0x436E], U32, CDAB), 0.01, 0.0) {
        Value::F64(x) => assert!((x - 11313223.24).abs() < 1e-6),
        v => panic!("{v:?}"),
    }
    assert_eq!(f(&[0x028F, 0x4365], F32, CDAB), 229.00999450683594);
    let swapped = f(&[0x028F, 0x4365], F32, ABCD);
    assert!((swapped - 2.105e-37).abs() < 1e-39, "ABCD gives {swapped}");
    // The reported 2.418e-41 is 0x00004368 (high word in the second register).
    let denormal = f(&[0x0000, 0x4368], F32, ABCD);
    assert!((denormal - 2.418e-41).abs() < 1e-43);
    // The self-check flags a non-zero subnormal and a huge magnitude, and
    // accepts the right value.
    assert!(implausible_float(denormal));
    assert!(implausible_float(f(&[0x7E96, 0x7699], F32, ABCD)), "1e38-scale value");
    assert!(!implausible_float(238.60870361328125));
    assert!(!implausible_float(0.0));
}

#[test]
fn b02_per_tag_byte_order() {
    assert_eq!(int(&[0x0009, 0x6A29], U32, ABCD), Value::U64(617001));
    assert_eq!(f(&[0xC395, 0xCA43], F32, ABCD), -299.5801696777344);
    assert_eq!(f(&[0xC395, 0xCA43], F32, DCBA), 405.1700134277344);
    assert_eq!(f(&[0x43CA, 0x15C3], F32, ABCD), 404.1700134277344);
}

#[test]
fn b03_64_bit_integers() {
    let w = [0x0000, 0x0000, 0x075B, 0xCD15];
    assert_eq!(int(&w, I64, ABCD), Value::I64(123456789));
    assert_eq!(int(&w, I64, CDAB), Value::I64(-3669018233999982592));
    let ones = [0xFFFF; 4];
    assert_eq!(int(&ones, I64, ABCD), Value::I64(-1));
    assert_eq!(int(&ones, U64, ABCD), Value::U64(18446744073709551615));
    let big = [0x0020, 0x0000, 0x0000, 0x0001];
    assert_eq!(int(&big, U64, ABCD), Value::U64(9007199254740993));
    // A 1/10 scale gives the decimal the device meant, without float noise.
    assert_eq!(apply_scale(Value::I64(2152), 0.1, 0.0), Value::F64(215.2));
    assert_eq!(apply_scale(Value::I64(423), 0.1, 0.0), Value::F64(42.3));
    // Identity scaling keeps the integer exact; real scaling happens after assembly.
    assert_eq!(apply_scale(Value::U64(9007199254740993), 1.0, 0.0), Value::U64(9007199254740993));
    assert_eq!(apply_scale(Value::I64(123456789), 0.001, 0.0), Value::F64(123456.789));
}

#[test]
fn b05_signed_16_bit_with_scale_and_offset() {
    assert_eq!(apply_scale(int(&[0xFF9C], I16, ABCD), 0.01, 0.0), Value::F64(-1.0));
    assert_eq!(int(&[0xFFEC], I16, ABCD), Value::I64(-20));
    match apply_scale(int(&[0xFF9C], U16, ABCD), 0.01, 0.0) {
        Value::F64(x) => assert!((x - 654.36).abs() < 1e-9, "the bug reads {x}"),
        v => panic!("{v:?}"),
    }
    // raw → sign → scale → offset.
    match apply_scale(Value::I64(-100), 0.1, 273.15) {
        Value::F64(x) => assert!((x - 263.15).abs() < 1e-9, "{x}"),
        v => panic!("{v:?}"),
    }
    // Writes: -10 is 0xFFF6; out-of-range values are refused before the bus.
    assert_eq!(encode(&Value::I64(-10), I16, ABCD).unwrap(), vec![0xFFF6]);
    assert!(encode(&Value::I64(40000), I16, ABCD).is_err());
    assert!(encode(&Value::I64(-32769), I16, ABCD).is_err());
    assert!(encode(&Value::I64(-1), U16, ABCD).is_err());
    assert_eq!(encode(&Value::I64(-32768), I16, ABCD).unwrap(), vec![0x8000]);
}

#[test]
fn b06_bits_of_a_holding_register() {
    let bits = |w: u16| -> Vec<u8> { (0..16).filter(|b| decode(&[w], Bool, ABCD, Some(*b)).unwrap() == Value::Bool(true)).collect() };
    assert_eq!(bits(0x6481), vec![0, 7, 10, 13, 14]);
    assert_eq!(bits(0x2481), vec![0, 7, 10, 13]);
    assert_eq!(decode(&[0x6481], Bool, ABCD, Some(8)).unwrap(), Value::Bool(false));
    assert_eq!(bits(0x0300), vec![8, 9]);
    // Read-modify-write keeps the other bits: never write 0x0008 alone.
    assert_eq!(with_bit(0x6481, 3, true), 0x6489);
    assert_eq!(with_bit(0x6489, 3, false), 0x6481);
    assert!(decode(&[0], Bool, ABCD, Some(16)).is_err());
}

/// Every numeric type in every byte order against hand-computed wire words.
#[test]
fn type_by_order_matrix() {
    // 0x11223344 in the four 32-bit orders.
    let w32 = [(ABCD, [0x1122, 0x3344]), (CDAB, [0x3344, 0x1122]), (BADC, [0x2211, 0x4433]), (DCBA, [0x4433, 0x2211])];
    for (o, w) in w32 {
        assert_eq!(int(&w, U32, o), Value::U64(0x11223344), "u32 {o}");
        assert_eq!(int(&w, I32, o), Value::I64(0x11223344), "i32 {o}");
        assert_eq!(encode(&Value::U64(0x11223344), U32, o).unwrap(), w.to_vec(), "encode u32 {o}");
    }
    // -2 as i32 and 1.5f32 (0x3FC00000) round-trip in every order.
    for o in ByteOrder::ALL {
        let w = encode(&Value::I64(-2), I32, o).unwrap();
        assert_eq!(int(&w, I32, o), Value::I64(-2), "{o}");
        let w = encode(&Value::F64(1.5), F32, o).unwrap();
        assert_eq!(f(&w, F32, o), 1.5, "{o}");
    }
    assert_eq!(encode(&Value::F64(1.5), F32, CDAB).unwrap(), vec![0x0000, 0x3FC0]);
    // 0x1122334455667788 in the four 64-bit orders.
    let w64 = [
        (ABCD, [0x1122, 0x3344, 0x5566, 0x7788]),
        (CDAB, [0x7788, 0x5566, 0x3344, 0x1122]),
        (BADC, [0x2211, 0x4433, 0x6655, 0x8877]),
        (DCBA, [0x8877, 0x6655, 0x4433, 0x2211]),
    ];
    for (o, w) in w64 {
        assert_eq!(int(&w, U64, o), Value::U64(0x1122334455667788), "u64 {o}");
        assert_eq!(int(&w, I64, o), Value::I64(0x1122334455667788), "i64 {o}");
        assert_eq!(encode(&Value::U64(0x1122334455667788), U64, o).unwrap(), w.to_vec());
    }
    // f64 1.0 = 0x3FF0000000000000.
    assert_eq!(f(&[0x3FF0, 0, 0, 0], F64, ABCD), 1.0);
    assert_eq!(f(&[0, 0, 0, 0xF03F], F64, DCBA), 1.0);
    assert_eq!(f(&[0, 0, 0, 0x3FF0], F64, CDAB), 1.0);
    assert_eq!(f(&[0xF03F, 0, 0, 0], F64, BADC), 1.0);
    // 16-bit: BADC and DCBA swap the bytes.
    assert_eq!(int(&[0x1234], U16, ABCD), Value::U64(0x1234));
    assert_eq!(int(&[0x1234], U16, CDAB), Value::U64(0x1234));
    assert_eq!(int(&[0x1234], U16, BADC), Value::U64(0x3412));
    assert_eq!(int(&[0x1234], U16, DCBA), Value::U64(0x3412));
    assert_eq!(int(&[0x9CFF], I16, DCBA), Value::I64(-100));
    // Booleans from a whole register.
    assert_eq!(decode(&[0], Bool, ABCD, None).unwrap(), Value::Bool(false));
    assert_eq!(decode(&[7], Bool, ABCD, None).unwrap(), Value::Bool(true));
}

#[test]
fn strings_and_short_reads() {
    // "PUMP-01" in ABCD, NUL-padded to 4 registers.
    let w = encode(&Value::Str("PUMP-01".into()), String(4), ABCD).unwrap();
    assert_eq!(w, vec![0x5055, 0x4D50, 0x2D30, 0x3100]);
    assert_eq!(decode(&w, String(4), ABCD, None).unwrap(), Value::Str("PUMP-01".into()));
    let swapped: Vec<u16> = w.iter().map(|x| x.swap_bytes()).collect();
    assert_eq!(decode(&swapped, String(4), BADC, None).unwrap(), Value::Str("PUMP-01".into()));
    assert!(encode(&Value::Str("TOO LONG FOR TWO".into()), String(2), ABCD).is_err());
    assert!(decode(&[1], U32, ABCD, None).is_err(), "a short read is an error, never a panic");
    assert!(decode(&[], F64, ABCD, None).is_err());
}

#[test]
fn names_parse() {
    assert_eq!("float32".parse::<DataType>().unwrap(), F32);
    assert_eq!("string(10)".parse::<DataType>().unwrap(), String(10));
    assert!("string(0)".parse::<DataType>().is_err());
    assert!("f33".parse::<DataType>().unwrap_err().contains("expected one of"));
    assert_eq!("GHEFCDAB".parse::<ByteOrder>().unwrap(), CDAB);
    assert_eq!("hgfedcba".parse::<ByteOrder>().unwrap(), DCBA);
    assert!("ACBD".parse::<ByteOrder>().is_err());
}
