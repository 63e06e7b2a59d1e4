use std::time::Duration;

use super::*;
use crate::sources::modbus::decode::decode;
use crate::sources::modbus::types::ByteOrder;

fn tag(ty: DataType, table: Table, bit: Option<u8>, scale: f64, offset: f64, order: ByteOrder) -> ModbusTag {
    ModbusTag {
        name: "t".into(),
        table,
        address: 0,
        ty,
        byte_order: order,
        bit,
        scale,
        offset,
        unit: None,
        poll_interval: Duration::from_secs(1),
        write: None,
    }
}

fn limits(min: Option<f64>, max: Option<f64>) -> TagWrite {
    TagWrite {
        min,
        max,
        max_rate: None,
        readback: true,
        readback_timeout: Duration::from_secs(1),
        interlock: None,
        allow_bad_quality: false,
        rogue_write: true,
    }
}

#[test]
fn b05_negative_setpoint_is_twos_complement_and_out_of_type_is_refused() {
    let t = tag(DataType::I16, Table::Holding, None, 1.0, 0.0, ByteOrder::ABCD);
    assert_eq!(payload(&t, &limits(None, None), &Value::I64(-10)), Ok(Payload::Words(vec![0xFFF6])));
    let e = payload(&t, &limits(None, None), &Value::I64(40000)).unwrap_err();
    assert!(e.starts_with("bad_value:"), "{e}");
    let e = payload(&t, &limits(None, None), &Value::I64(-32769)).unwrap_err();
    assert!(e.starts_with("bad_value:"), "{e}");
}

#[test]
fn scale_and_offset_are_inverted_and_round_trip_through_decode() {
    // raw int16 -100, scale 0.1, offset 273.15 -> 263.15 (B05); back again.
    let t = tag(DataType::I16, Table::Holding, None, 0.1, 273.15, ByteOrder::ABCD);
    assert_eq!(payload(&t, &limits(None, None), &Value::F64(263.15)), Ok(Payload::Words(vec![(-100i16) as u16])));
    let e = payload(&t, &limits(None, None), &Value::F64(263.17)).unwrap_err();
    assert!(e.starts_with("bad_value:") && e.contains("not an integer"), "{e}");
    // f32 CDAB: 238.60870361328125 is [0x9BD4, 0x436E] (B01).
    let f = tag(DataType::F32, Table::Holding, None, 1.0, 0.0, ByteOrder::CDAB);
    let Ok(Payload::Words(w)) = payload(&f, &limits(None, None), &Value::F64(238.60870361328125)) else { panic!() };
    assert_eq!(w, [0x9BD4, 0x436E]);
    assert_eq!(decode(&w, DataType::F32, ByteOrder::CDAB, None), Ok(Value::F64(238.60870361328125)));
    // u64 2^53 + 1 stays exact (B03).
    let u = tag(DataType::U64, Table::Holding, None, 1.0, 0.0, ByteOrder::ABCD);
    assert_eq!(payload(&u, &limits(None, None), &Value::U64(9007199254740993)), Ok(Payload::Words(vec![0x0020, 0, 0, 1])));
}

#[test]
fn limits_and_kinds_are_checked_before_encoding() {
    let t = tag(DataType::U16, Table::Holding, None, 1.0, 0.0, ByteOrder::ABCD);
    let l = limits(Some(10.0), Some(80.0));
    assert!(payload(&t, &l, &Value::I64(9)).unwrap_err().starts_with("out_of_range: 9 is below min 10"));
    assert!(payload(&t, &l, &Value::F64(80.5)).unwrap_err().starts_with("out_of_range: 80.5 is above max 80"));
    assert_eq!(payload(&t, &l, &Value::I64(80)), Ok(Payload::Words(vec![80])));
    assert!(payload(&t, &l, &Value::Str("12".into())).unwrap_err().starts_with("bad_value:"));
    assert!(payload(&t, &l, &Value::Bool(true)).unwrap_err().starts_with("bad_value:"));
    assert!(payload(&t, &l, &Value::F64(f64::NAN)).unwrap_err().starts_with("bad_value:"));
    let b = tag(DataType::Bool, Table::Coil, None, 1.0, 0.0, ByteOrder::ABCD);
    assert_eq!(payload(&b, &l, &Value::I64(1)), Ok(Payload::Coil(true)));
    assert!(payload(&b, &l, &Value::I64(5)).unwrap_err().starts_with("bad_value:"));
}

#[test]
fn b06_bit_write_masks_and_read_modify_write() {
    // Set bit 3 of 0x6481: 0x6489; FC22 AND 0xFFF7, OR 0x0008.
    assert_eq!(modified(0x6481, 3, true, ByteOrder::ABCD), 0x6489);
    assert_eq!(mask(3, true, ByteOrder::ABCD), (0xFFF7, 0x0008));
    assert_eq!(mask(3, false, ByteOrder::ABCD), (0xFFF7, 0));
    // Byte-swapped register: bit 3 of the value is bit 11 on the wire.
    assert_eq!(mask(3, true, ByteOrder::BADC), (0xF7FF, 0x0800));
    assert_eq!(modified(0x0000, 3, true, ByteOrder::DCBA), 0x0800);
    let t = tag(DataType::Bool, Table::Holding, Some(3), 1.0, 0.0, ByteOrder::ABCD);
    assert_eq!(payload(&t, &limits(None, None), &Value::Bool(true)), Ok(Payload::RegisterBit { bit: 3, on: true }));
}

#[test]
fn function_codes_follow_the_device_and_echoes_are_checked() {
    let fc06 = DeviceWrites::default();
    let fc16 = DeviceWrites { register: SingleWrite::Multiple, coil: SingleWrite::Multiple, mask_write: false };
    assert_eq!(words_request(7, &[1], &fc06).0, 6);
    assert_eq!(words_request(7, &[1], &fc16).0, 16);
    assert_eq!(words_request(7, &[1, 2], &fc06).0, 16);
    assert_eq!(coil_request(7, true, &fc06).0, 5);
    assert_eq!(coil_request(7, true, &fc16).0, 15);
    let (_, r) = words_request(7, &[1], &fc06);
    assert!(echo_ok(&r, &Response::WriteSingleRegister(7, 1)));
    assert!(!echo_ok(&r, &Response::WriteSingleRegister(7, 2)));
    let (_, r) = words_request(7, &[1, 2], &fc06);
    assert!(echo_ok(&r, &Response::WriteMultipleRegisters(7, 2)));
    assert!(!echo_ok(&r, &Response::WriteMultipleRegisters(8, 2)));
}

/// The reason of a dry run is readable (not Rust's debug form of the payload).
#[test]
fn a_dry_run_is_described_with_the_value_the_table_and_the_function_code() {
    let fc06 = DeviceWrites::default();
    let fc16 = DeviceWrites { register: SingleWrite::Multiple, coil: SingleWrite::Multiple, mask_write: false };
    let fc22 = DeviceWrites { mask_write: true, ..DeviceWrites::default() };
    let mut reg = tag(DataType::I16, Table::Holding, None, 1.0, 0.0, ByteOrder::ABCD);
    reg.address = 10;
    assert_eq!(describe(&Payload::Words(vec![120]), &reg, &fc06), "120 (0x0078) to holding 10 with FC06");
    assert_eq!(describe(&Payload::Words(vec![120]), &reg, &fc16), "120 (0x0078) to holding 10 with FC16");
    assert_eq!(describe(&Payload::Words(vec![16948, 0]), &reg, &fc06), "words 16948, 0 (0x4234, 0x0000) to holding 10 with FC16");
    let mut coil = tag(DataType::Bool, Table::Coil, None, 1.0, 0.0, ByteOrder::ABCD);
    coil.address = 3;
    assert_eq!(describe(&Payload::Coil(true), &coil, &fc06), "ON to coil 3 with FC05");
    assert_eq!(describe(&Payload::Coil(false), &coil, &fc16), "OFF to coil 3 with FC15");
    let bit = Payload::RegisterBit { bit: 3, on: true };
    assert_eq!(describe(&bit, &reg, &fc22), "bit 3 ON of holding 10 with FC22");
    assert_eq!(describe(&bit, &reg, &fc06), "bit 3 ON of holding 10 by read-modify-write (read, then FC06)");
}
