//! The built-in emulator of Tencent Cloud: the API 3.0 services and COS
//! (`reference/tencentcloud-api.md` §10), for tests, `tcbackup demo` and
//! `tcbackup emulator`.

pub mod cos;
