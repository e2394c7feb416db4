//! sysmgr library.
