//! Fuzz target: the raw decoder; see `framecast_fuzz` for the input layout and invariants.
#![no_main]

use framecast_fuzz::{check, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(Target::Raw, data));
