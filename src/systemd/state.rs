//! The words systemd reports unit and job states in, as enums.
//!
//! systemd reports `ActiveState`, `SubState`, `LoadState`, a service's `Result` and a job's
//! result as strings. Comparing those strings all over the code let a typo compile; here each
//! set of words is an enum with one variant per value systemd 252 documents, and `Unknown`
//! only for values later versions add (it keeps the text, so it is still shown as is).

use std::fmt;

/// Declares an enum of systemd words with `parse`, `as_str`, `Display` and `Serialize`.
macro_rules! systemd_words {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A value newer systemd versions may add, kept as systemd spelt it.
            Unknown(String),
        }

        impl $name {
            /// Parses systemd's word; anything unknown is kept in [`Self::Unknown`].
            pub fn parse(s: &str) -> Self {
                match s {
                    $($text => Self::$variant,)*
                    other => Self::Unknown(other.to_string()),
                }
            }

            /// systemd's word for it.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)*
                    Self::Unknown(s) => s,
                }
            }

            /// Every word this enum knows, for tests.
            #[cfg(test)]
            const KNOWN: &'static [&'static str] = &[$($text),*];
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

systemd_words! {
    /// A unit's `ActiveState`: the high-level state every unit type shares.
    pub enum ActiveState {
        /// Started and running (for `Type=notify`, after `READY=1`).
        Active = "active",
        /// Reloading its configuration.
        Reloading = "reloading",
        /// Not running; systemd's initial state.
        #[default]
        Inactive = "inactive",
        /// Not running, and the last run failed.
        Failed = "failed",
        /// Starting.
        Activating = "activating",
        /// Stopping.
        Deactivating = "deactivating",
        /// Not running while systemd cleans up after it (`systemctl clean`).
        Maintenance = "maintenance",
    }
}

impl ActiveState {
    /// Anything but stopped: what counts as running for scaling and reloading.
    pub fn is_up(&self) -> bool {
        !matches!(self, Self::Inactive | Self::Failed)
    }
}

systemd_words! {
    /// A service's `SubState`: where in its start/stop sequence it is.
    pub enum SubState {
        /// Not running; systemd's initial state.
        #[default]
        Dead = "dead",
        /// Running `ExecCondition=`.
        Condition = "condition",
        /// Running `ExecStartPre=`.
        StartPre = "start-pre",
        /// Starting the main process.
        Start = "start",
        /// Running `ExecStartPost=`.
        StartPost = "start-post",
        /// Running.
        Running = "running",
        /// The main process exited and the service remains active (`RemainAfterExit=`).
        Exited = "exited",
        /// Reloading.
        Reload = "reload",
        /// Running `ExecStop=`.
        Stop = "stop",
        /// Stopping after a watchdog timeout.
        StopWatchdog = "stop-watchdog",
        /// Sent the kill signal, waiting.
        StopSigterm = "stop-sigterm",
        /// Sent `SIGKILL`, waiting.
        StopSigkill = "stop-sigkill",
        /// Running `ExecStopPost=`.
        StopPost = "stop-post",
        /// Killing the rest after a watchdog timeout.
        FinalWatchdog = "final-watchdog",
        /// Killing the remaining processes.
        FinalSigterm = "final-sigterm",
        /// Killing the remaining processes with `SIGKILL`.
        FinalSigkill = "final-sigkill",
        /// Failed.
        Failed = "failed",
        /// Waiting `RestartSec=` before an automatic restart.
        AutoRestart = "auto-restart",
        /// Removing its directories (`systemctl clean`).
        Cleaning = "cleaning",
    }
}

systemd_words! {
    /// A unit's `LoadState`: whether its file was found and read.
    pub enum LoadState {
        /// Not loaded yet; systemd's initial state.
        #[default]
        Stub = "stub",
        /// Loaded.
        Loaded = "loaded",
        /// No unit file.
        NotFound = "not-found",
        /// The file has a fatal error.
        BadSetting = "bad-setting",
        /// Loading failed.
        Error = "error",
        /// Merged into another unit (an alias).
        Merged = "merged",
        /// Masked.
        Masked = "masked",
    }
}

systemd_words! {
    /// A service's `Result`: why its last run ended.
    pub enum ServiceResult {
        /// It did not fail; systemd's initial value.
        #[default]
        Success = "success",
        /// Out of resources (e.g. it could not fork).
        Resources = "resources",
        /// It broke the protocol of its `Type=` (e.g. no PID file).
        Protocol = "protocol",
        /// A timeout passed.
        Timeout = "timeout",
        /// It exited with a non-zero status.
        ExitCode = "exit-code",
        /// A signal killed it.
        Signal = "signal",
        /// A signal killed it and it dumped core.
        CoreDump = "core-dump",
        /// It missed its watchdog.
        Watchdog = "watchdog",
        /// It was started too often (`StartLimitBurst=`).
        StartLimitHit = "start-limit-hit",
        /// The kernel's OOM killer killed it.
        OomKill = "oom-kill",
        /// `ExecCondition=` failed.
        ExecCondition = "exec-condition",
    }
}

systemd_words! {
    /// A socket unit's `Result` of its last run: why systemd failed it.
    pub enum SocketResult {
        /// It did not fail.
        #[default]
        Success = "success",
        /// Out of resources: most often, the address could not be bound (it is in use).
        Resources = "resources",
        /// A timeout passed.
        Timeout = "timeout",
        /// A command of its own (`ExecStartPre=`...) exited with a non-zero status.
        ExitCode = "exit-code",
        /// A command of its own was killed by a signal.
        Signal = "signal",
        /// A command of its own dumped core.
        CoreDump = "core-dump",
        /// The socket itself was started too often.
        StartLimitHit = "start-limit-hit",
        /// It was activated too often (`TriggerLimitBurst=`).
        TriggerLimitHit = "trigger-limit-hit",
        /// A service it activates hit its start limit.
        ServiceStartLimitHit = "service-start-limit-hit",
    }
}

systemd_words! {
    /// How a job ended, from the `JobRemoved` signal.
    pub enum JobResult {
        /// It did what was asked.
        #[default]
        Done = "done",
        /// Another job replaced it.
        Canceled = "canceled",
        /// Its job timeout passed.
        Timeout = "timeout",
        /// The unit failed (the service's own `Result` says why).
        Failed = "failed",
        /// A unit it depends on failed.
        Dependency = "dependency",
        /// Nothing to do (e.g. a reload of an inactive unit).
        Skipped = "skipped",
        /// The job does not apply to the unit (e.g. a reload of a unit that cannot reload).
        Invalid = "invalid",
        /// An `Assert*=` failed.
        Assert = "assert",
        /// The unit type is not supported here.
        Unsupported = "unsupported",
        /// The job was garbage-collected.
        Collected = "collected",
        /// The unit has `RefuseManualStart=` or was already run once.
        Once = "once",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_word_round_trips_and_unknown_ones_are_kept() {
        fn check<T: fmt::Display>(
            known: &[&str],
            parse: fn(&str) -> T,
            is_unknown: fn(&T) -> bool,
        ) {
            for word in known {
                let parsed = parse(word);
                assert!(!is_unknown(&parsed), "{word} parsed as unknown");
                assert_eq!(parsed.to_string(), *word);
            }
            let new = parse("added-in-systemd-300");
            assert!(is_unknown(&new));
            assert_eq!(new.to_string(), "added-in-systemd-300");
        }
        check(ActiveState::KNOWN, ActiveState::parse, |s| {
            matches!(s, ActiveState::Unknown(_))
        });
        check(SubState::KNOWN, SubState::parse, |s| {
            matches!(s, SubState::Unknown(_))
        });
        check(LoadState::KNOWN, LoadState::parse, |s| {
            matches!(s, LoadState::Unknown(_))
        });
        check(ServiceResult::KNOWN, ServiceResult::parse, |s| {
            matches!(s, ServiceResult::Unknown(_))
        });
        check(SocketResult::KNOWN, SocketResult::parse, |s| {
            matches!(s, SocketResult::Unknown(_))
        });
        check(JobResult::KNOWN, JobResult::parse, |s| {
            matches!(s, JobResult::Unknown(_))
        });
        assert_eq!(JobResult::parse("done"), JobResult::Done);
    }

    #[test]
    fn only_inactive_and_failed_count_as_down() {
        assert!(!ActiveState::Inactive.is_up());
        assert!(!ActiveState::Failed.is_up());
        for up in [
            "active",
            "activating",
            "deactivating",
            "reloading",
            "refreshing",
        ] {
            assert!(ActiveState::parse(up).is_up(), "{up}");
        }
    }
}
