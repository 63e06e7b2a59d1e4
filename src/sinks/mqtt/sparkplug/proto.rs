//! The Sparkplug B payload as protobuf messages (prost derive), written from
//! the schema in Sparkplug 3.0 §6.4.1 ("Google Protocol Buffer Schema",
//! `org.eclipse.tahu.protobuf.Payload`, proto2).
//!
//! Only what relais sends and reads is declared: `Payload`, `Metric`,
//! `PropertySet`, `PropertyValue`. Field numbers and wire types are the
//! spec's, so any Sparkplug B decoder reads these messages; fields relais
//! does not use (metadata, datasets, templates, extensions) are simply
//! absent, which proto2 allows, and are skipped when decoding an NCMD.

/// Sparkplug 3.0 §6.4.16 data type codes used by relais (`Metric.datatype`,
/// `PropertyValue.type`).
pub mod datatype {
    /// Signed 32-bit integer (the `Quality` property, §6.4.9.1).
    pub const INT32: u32 = 3;
    /// Signed 64-bit integer, two's complement in `long_value` (`bdSeq`, i64 samples).
    pub const INT64: u32 = 4;
    /// Unsigned 64-bit integer in `long_value` (u64 samples, `relais_seq`).
    pub const UINT64: u32 = 8;
    /// IEEE 754 double in `double_value` (f64 samples).
    pub const DOUBLE: u32 = 10;
    /// Boolean in `boolean_value`.
    pub const BOOLEAN: u32 = 11;
    /// UTF-8 string in `string_value`.
    pub const STRING: u32 = 12;
}

/// One Sparkplug B message (§6.4.5).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    /// Publish time, ms since the Unix epoch, UTC.
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    /// The metrics.
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// Message sequence number 0..=255 (absent only in NDEATH, §6.4.5).
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
}

/// One metric (§6.4.6).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// Name (births; data messages carry the alias only).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Alias, unique across the edge node's metrics.
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// Acquisition time, ms since the Unix epoch, UTC.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    /// Data type code ([`datatype`]); in births only.
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    /// Not a current value (replayed backlog).
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    /// Not to be historised.
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    /// The value is null (no value field then).
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    /// Properties (`Quality`, relais's own).
    #[prost(message, optional, tag = "9")]
    pub properties: Option<PropertySet>,
    /// The value.
    #[prost(oneof = "MetricValue", tags = "10, 11, 12, 13, 14, 15, 16")]
    pub value: Option<MetricValue>,
}

/// `Metric.value` (§6.4.6).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum MetricValue {
    /// Int8/16/32, UInt8/16/32.
    #[prost(uint32, tag = "10")]
    IntValue(u32),
    /// Int64 (two's complement), UInt64, DateTime.
    #[prost(uint64, tag = "11")]
    LongValue(u64),
    /// Float.
    #[prost(float, tag = "12")]
    FloatValue(f32),
    /// Double.
    #[prost(double, tag = "13")]
    DoubleValue(f64),
    /// Boolean.
    #[prost(bool, tag = "14")]
    BooleanValue(bool),
    /// String, Text, UUID.
    #[prost(string, tag = "15")]
    StringValue(String),
    /// Bytes, File.
    #[prost(bytes = "vec", tag = "16")]
    BytesValue(Vec<u8>),
}

/// Two arrays of equal length: keys and values (§6.4.8).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertySet {
    /// Property names.
    #[prost(string, repeated, tag = "1")]
    pub keys: Vec<String>,
    /// Property values, one per key.
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<PropertyValue>,
}

/// One property value (§6.4.9).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertyValue {
    /// Data type code ([`datatype`]).
    #[prost(uint32, optional, tag = "1")]
    pub r#type: Option<u32>,
    /// The value is null.
    #[prost(bool, optional, tag = "2")]
    pub is_null: Option<bool>,
    /// The value.
    #[prost(oneof = "PropertyValueValue", tags = "3, 4, 5, 6, 7, 8")]
    pub value: Option<PropertyValueValue>,
}

/// `PropertyValue.value` (§6.4.9).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum PropertyValueValue {
    /// Int8/16/32, UInt8/16/32.
    #[prost(uint32, tag = "3")]
    IntValue(u32),
    /// Int64, UInt64.
    #[prost(uint64, tag = "4")]
    LongValue(u64),
    /// Float.
    #[prost(float, tag = "5")]
    FloatValue(f32),
    /// Double.
    #[prost(double, tag = "6")]
    DoubleValue(f64),
    /// Boolean.
    #[prost(bool, tag = "7")]
    BooleanValue(bool),
    /// String.
    #[prost(string, tag = "8")]
    StringValue(String),
}

impl PropertySet {
    /// Appends one property.
    pub fn push(&mut self, key: &str, v: PropertyValue) {
        self.keys.push(key.to_string());
        self.values.push(v);
    }
}

impl PropertyValue {
    /// An Int32 property (negative values in two's complement, as the spec stores them).
    pub fn int32(v: i32) -> PropertyValue {
        PropertyValue { r#type: Some(datatype::INT32), is_null: None, value: Some(PropertyValueValue::IntValue(v as u32)) }
    }

    /// A UInt64 property.
    pub fn uint64(v: u64) -> PropertyValue {
        PropertyValue { r#type: Some(datatype::UINT64), is_null: None, value: Some(PropertyValueValue::LongValue(v)) }
    }

    /// A String property.
    pub fn string(v: &str) -> PropertyValue {
        PropertyValue { r#type: Some(datatype::STRING), is_null: None, value: Some(PropertyValueValue::StringValue(v.to_string())) }
    }
}
