//! How child processes are started so that none outlives its parent.

use std::process::Command;

/// Puts the child in its own process group, so a terminal's Ctrl-C reaches only the
/// parent (which then stops its children in order), and on Linux asks the kernel to
/// kill it if the parent dies without doing so.
pub fn detach_and_tie_to_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches nothing but the calling process.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
