//! A deterministic in-memory [`Cloud`](crate::port::Cloud) with an injected clock, for unit
//! tests of the console and the drill engine. Not a product backend.
