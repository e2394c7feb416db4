//! Private systemd sandbox (being written).
