//! Settings: the business-unit settings file.

pub mod business_units;
