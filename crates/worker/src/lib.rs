//! Worker side of sysmgr.
