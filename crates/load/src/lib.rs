//! Bounded HTTP/1.1 load client (being written).
