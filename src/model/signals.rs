//! Signal names, for masks CRIU stores (blocked, pending, signalfd, sigactions).
//!
//! Lives in the model so that both the model (signalfd masks) and the views can name
//! signals without the model reaching up into the views.

const SIGNALS: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// Names of the signals in a mask (bit n-1 = signal n). 32 and 33 are glibc's
/// internal signals; real-time ones are named from SIGRTMIN (34) as gdb does.
pub fn names(mask: u64) -> Vec<String> {
    (1..=64u32)
        .filter(|n| mask & (1u64 << (n - 1)) != 0)
        .map(|n| match SIGNALS.get(n as usize - 1) {
            Some(name) => name.to_string(),
            None if n < 34 => format!("SIG{n}"),
            None => format!("SIGRTMIN+{}", n - 34),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_signal_bit_has_a_name() {
        let all = super::names(u64::MAX);
        assert_eq!(all.len(), 64);
        assert_eq!(
            (all[0].as_str(), all[9].as_str(), all[30].as_str()),
            ("SIGHUP", "SIGUSR1", "SIGSYS")
        );
        assert_eq!(
            (all[31].as_str(), all[33].as_str(), all[63].as_str()),
            ("SIG32", "SIGRTMIN+0", "SIGRTMIN+30")
        );
    }
}
