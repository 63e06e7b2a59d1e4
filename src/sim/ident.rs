//! FC43 / MEI 0x0E, Read Device Identification (Modbus Application Protocol
//! v1.1b3 §6.21), basic objects only (pure).
//!
//! | object id | name                 | served value                 |
//! |-----------|----------------------|------------------------------|
//! | 0x00      | `VendorName`         | `relais`                     |
//! | 0x01      | `ProductCode`        | `relais-sim`                 |
//! | 0x02      | `MajorMinorRevision` | the crate version (`0.1.0`)  |
//!
//! Conformity level 0x81: basic identification, stream and individual
//! access. Stream access (read codes 01, 02, 03) returns every basic object
//! from the object id asked for (an unknown id restarts at 0x00, as §6.21
//! says; regular and extended objects do not exist, so codes 02 and 03
//! answer the basic ones); individual access (code 04) returns the one
//! object asked for, or exception 02 (illegal data address) for an unknown
//! id. All three objects fit in one answer, so `more_follows` is always
//! false.

use tokio_modbus::ExceptionCode;
use tokio_modbus::bytes::Bytes;
use tokio_modbus::prelude::{ConformityLevel, DeviceIdObject, ReadCode, ReadDeviceIdentificationResponse};

/// The basic objects, by object id.
pub const BASIC_OBJECTS: [(u8, &str); 3] = [(0x00, "relais"), (0x01, "relais-sim"), (0x02, env!("CARGO_PKG_VERSION"))];

/// The answer to a Read Device Identification request with `code`
/// starting at (or asking for) `object_id`.
pub fn read_device_identification(code: ReadCode, object_id: u8) -> Result<ReadDeviceIdentificationResponse, ExceptionCode> {
    let object = |(id, value): (u8, &str)| DeviceIdObject { id, value: Bytes::copy_from_slice(value.as_bytes()) };
    let objects: Vec<DeviceIdObject> = match code {
        ReadCode::Specific => {
            let found = BASIC_OBJECTS.iter().find(|(id, _)| *id == object_id).ok_or(ExceptionCode::IllegalDataAddress)?;
            vec![object(*found)]
        }
        ReadCode::Basic | ReadCode::Regular | ReadCode::Extended => {
            let start = if (object_id as usize) < BASIC_OBJECTS.len() { object_id as usize } else { 0 };
            BASIC_OBJECTS[start..].iter().copied().map(object).collect()
        }
    };
    Ok(ReadDeviceIdentificationResponse {
        read_code: code,
        conformity_level: ConformityLevel::BasicIdentification,
        more_follows: false,
        next_object_id: 0,
        device_id_objects: objects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(r: &ReadDeviceIdentificationResponse) -> Vec<(u8, String)> {
        r.device_id_objects.iter().map(|o| (o.id, o.value_as_str().unwrap().to_string())).collect()
    }

    #[test]
    fn stream_access_serves_the_basic_objects_from_the_id_asked_for() {
        let all = read_device_identification(ReadCode::Basic, 0).unwrap();
        assert_eq!(names(&all), vec![(0, "relais".into()), (1, "relais-sim".into()), (2, env!("CARGO_PKG_VERSION").into())]);
        assert_eq!(all.conformity_level, ConformityLevel::BasicIdentification);
        assert!(!all.more_follows);
        assert_eq!(names(&read_device_identification(ReadCode::Basic, 2).unwrap()), vec![(2, env!("CARGO_PKG_VERSION").into())]);
        // An unknown id restarts at object 0 (§6.21).
        assert_eq!(read_device_identification(ReadCode::Regular, 0x80).unwrap().device_id_objects.len(), 3);
    }

    #[test]
    fn individual_access_serves_one_object_or_exception_02() {
        assert_eq!(names(&read_device_identification(ReadCode::Specific, 1).unwrap()), vec![(1, "relais-sim".into())]);
        assert_eq!(read_device_identification(ReadCode::Specific, 3).unwrap_err(), ExceptionCode::IllegalDataAddress);
    }
}
