//! Salesforce record ids.
//!
//! A Salesforce id is 15 case-sensitive characters, optionally followed by a 3-character
//! suffix that encodes the case of the first 15 so that the 18-character form survives
//! case-insensitive systems (spreadsheets, some APIs, people typing). Two ids name the same
//! record when their first 15 characters are equal once the case is restored.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// A validated Salesforce id, kept in its canonical case-correct 15-character form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SfId([u8; 15]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfIdError {
    #[error("a Salesforce id has 15 or 18 characters, this one has {0}")]
    Length(usize),
    #[error("a Salesforce id has only letters and digits")]
    Character,
    #[error("the last 3 characters of an 18-character Salesforce id are not a valid checksum")]
    Suffix,
}

impl SfId {
    /// Parses a 15- or 18-character id. An 18-character id without upper-case letters is
    /// restored by its suffix; one with upper-case letters is taken as written.
    pub fn parse(text: &str) -> Result<Self, SfIdError> {
        let bytes = text.as_bytes();
        if bytes.len() != 15 && bytes.len() != 18 {
            return Err(SfIdError::Length(text.chars().count()));
        }
        if !bytes.iter().all(u8::is_ascii_alphanumeric) {
            return Err(SfIdError::Character);
        }
        let mut key = [0u8; 15];
        key.copy_from_slice(&bytes[..15]);
        if bytes.len() == 18 {
            let mut bits_of_chunk = [0usize; 3];
            for (chunk, &suffix_char) in bytes[15..].iter().enumerate() {
                let upper = suffix_char.to_ascii_uppercase();
                bits_of_chunk[chunk] = SUFFIX_ALPHABET
                    .iter()
                    .position(|&c| c == upper)
                    .ok_or(SfIdError::Suffix)?;
            }
            // An upper-case letter means the case survived: trust it (hand-written ids often
            // carry a made-up suffix). All lower case means it may have been lost (spreadsheets,
            // people typing): the suffix restores it.
            if !key.iter().any(u8::is_ascii_uppercase) {
                for (chunk, bits) in bits_of_chunk.iter().enumerate() {
                    for bit in 0..5 {
                        let byte = &mut key[chunk * 5 + bit];
                        let is_upper = bits & (1 << bit) != 0;
                        if byte.is_ascii_alphabetic() {
                            *byte = if is_upper {
                                byte.to_ascii_uppercase()
                            } else {
                                byte.to_ascii_lowercase()
                            };
                        } else if is_upper {
                            // A digit cannot be upper case: the suffix does not belong to these 15.
                            return Err(SfIdError::Suffix);
                        }
                    }
                }
            }
        }
        Ok(SfId(key))
    }

    /// The case-sensitive 15-character form: the record's identity.
    pub fn as_str15(&self) -> &str {
        // Only ASCII alphanumerics are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The 18-character form with its case-encoding suffix, as the REST API returns ids.
    pub fn to_18(&self) -> String {
        let mut out = String::with_capacity(18);
        out.push_str(self.as_str15());
        for chunk in self.0.chunks(5) {
            let bits = chunk
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_ascii_uppercase())
                .fold(0usize, |acc, (i, _)| acc | (1 << i));
            out.push(SUFFIX_ALPHABET[bits] as char);
        }
        out
    }

    /// The 3-character key prefix naming the object type (`005` users, `00G` groups, ...).
    pub fn key_prefix(&self) -> &str {
        &self.as_str15()[..3]
    }
}

impl fmt::Display for SfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_18())
    }
}

impl fmt::Debug for SfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SfId({})", self.to_18())
    }
}

impl std::str::FromStr for SfId {
    type Err = SfIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SfId::parse(s)
    }
}

impl Serialize for SfId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_18())
    }
}

impl<'de> Deserialize<'de> for SfId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        SfId::parse(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid Salesforce id {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighteen_char_form_is_computed_from_case_of_first_fifteen() {
        // Documented example pair from Salesforce.
        let id = SfId::parse("001A0000006Vm9r").unwrap();
        assert_eq!(id.to_18(), "001A0000006Vm9rIAC");
    }

    #[test]
    fn fifteen_and_eighteen_char_forms_are_the_same_id() {
        assert_eq!(
            SfId::parse("005Dn000003XyZa").unwrap(),
            SfId::parse(&SfId::parse("005Dn000003XyZa").unwrap().to_18()).unwrap()
        );
    }

    #[test]
    fn lower_cased_eighteen_char_id_recovers_the_original_case() {
        let canonical = SfId::parse("005Dn000003XyZa").unwrap();
        let lowered = canonical.to_18().to_ascii_lowercase();
        assert_eq!(SfId::parse(&lowered).unwrap(), canonical);
        assert_eq!(SfId::parse(&lowered).unwrap().as_str15(), "005Dn000003XyZa");
    }

    #[test]
    fn eighteen_char_id_with_upper_case_keeps_its_case_whatever_the_suffix() {
        // The documented examples: the suffix says "all lower case", the ids say otherwise.
        assert_eq!(
            SfId::parse("0Uv000000000001AAA").unwrap().as_str15(),
            "0Uv000000000001"
        );
        assert_eq!(
            SfId::parse("00G000000000001AAA").unwrap(),
            SfId::parse("00G000000000001").unwrap()
        );
    }

    #[test]
    fn fifteen_char_ids_differing_only_in_case_are_different_records() {
        assert_ne!(
            SfId::parse("005Dn000003XyZa").unwrap(),
            SfId::parse("005Dn000003xyza").unwrap()
        );
    }

    #[test]
    fn malformed_ids_are_rejected_with_the_reason() {
        assert_eq!(SfId::parse("005abc"), Err(SfIdError::Length(6)));
        assert_eq!(SfId::parse("005Dn000003XyZ!"), Err(SfIdError::Character));
        assert_eq!(SfId::parse("005Dn000003XyZa!!!"), Err(SfIdError::Character));
        assert_eq!(SfId::parse("005Dn000003XyZa999"), Err(SfIdError::Suffix));
        // A suffix marking a digit as upper case cannot belong to these 15 characters.
        assert_eq!(SfId::parse("000000000000000BAA"), Err(SfIdError::Suffix));
    }
}
