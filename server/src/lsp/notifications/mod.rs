//! One file per notification method.

pub(super) mod did_change;
pub(super) mod did_change_configuration;
pub(super) mod did_close;
pub(super) mod did_open;
pub(super) mod did_save;
pub(super) mod initialized;
pub(super) mod warm;
