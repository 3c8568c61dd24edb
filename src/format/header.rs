//! The safetensors header: the 8-byte little-endian length, then a JSON object of tensor
//! entries and an optional `__metadata__` map, parsed strictly (duplicate keys and unknown
//! fields are errors, not last-one-wins).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use crate::error::{Error, Result};

/// Largest header quill accepts (as safetensors does): guards against absurd allocations.
const MAX_HEADER: u64 = 100 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEntry {
    pub dtype: String,
    pub shape: Vec<u64>,
    pub data_offsets: [u64; 2],
}

pub(super) struct RawHeader {
    pub metadata: Option<BTreeMap<String, String>>,
    pub entries: Vec<(String, RawEntry)>,
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHeader;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of tensors")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawHeader, A::Error> {
                let mut metadata = None;
                let mut entries = Vec::new();
                let mut seen = HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "__metadata__" {
                        if metadata.is_some() {
                            return Err(de::Error::custom("`__metadata__` appears twice"));
                        }
                        let m = map.next_value::<BTreeMap<String, String>>().map_err(|e| {
                            de::Error::custom(format!(
                                "`__metadata__` must map strings to strings: {e}"
                            ))
                        })?;
                        metadata = Some(m);
                    } else {
                        if !seen.insert(key.clone()) {
                            return Err(de::Error::custom(format!("tensor `{key}` appears twice")));
                        }
                        let e = map
                            .next_value::<RawEntry>()
                            .map_err(|e| de::Error::custom(format!("tensor `{key}`: {e}")))?;
                        entries.push((key, e));
                    }
                }
                Ok(RawHeader { metadata, entries })
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads the 8-byte length and the JSON header.
pub(super) fn parse_header(bytes: &[u8]) -> Result<(usize, RawHeader)> {
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(Error::Truncated(format!(
            "{} bytes, but a safetensors file starts with an 8-byte header length",
            bytes.len()
        )));
    };
    let n = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    if n > MAX_HEADER {
        return Err(Error::BadHeader(format!(
            "header length {n} exceeds the {MAX_HEADER}-byte limit"
        )));
    }
    if n > (bytes.len() - 8) as u64 {
        return Err(Error::Truncated(format!(
            "header length {n} runs past the end of the file ({} bytes)",
            bytes.len()
        )));
    }
    let n = n as usize;
    let text = std::str::from_utf8(&bytes[8..8 + n])
        .map_err(|e| Error::BadHeader(format!("header is not valid UTF-8: {e}")))?;
    let header: RawHeader =
        serde_json::from_str(text).map_err(|e| Error::BadHeader(e.to_string()))?;
    Ok((n, header))
}
