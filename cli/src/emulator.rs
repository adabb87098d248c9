//! moto's server, the AWS emulator local runs and tests use.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Names the `moto_server` program explicitly, when it is not found by itself.
pub const MOTO_SERVER_VARIABLE: &str = "HOOKLINE_MOTO_SERVER";
/// How long moto's server may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error(
        "moto_server was not found: run `make setup` (it installs moto into .venv), \
         put moto_server on PATH (pip install 'moto[server]'), or set {MOTO_SERVER_VARIABLE}"
    )]
    NotFound,
    #[error("could not start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("moto_server did not listen on {0} within {START_TIMEOUT:?}")]
    NotReady(SocketAddr),
    #[error("no free port on 127.0.0.1: {0}")]
    NoPort(std::io::Error),
}

/// A port the OS just had free on 127.0.0.1.
pub fn free_port() -> Result<u16, EmulatorError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(EmulatorError::NoPort)?;
    Ok(listener.local_addr().map_err(EmulatorError::NoPort)?.port())
}

/// `moto_server`: from [`MOTO_SERVER_VARIABLE`], a `.venv` in the current directory or
/// above it (or above this executable, which sits in `target/<profile>/`), or `PATH`.
pub fn find_moto_server() -> Result<PathBuf, EmulatorError> {
    if let Some(explicit) = std::env::var_os(MOTO_SERVER_VARIABLE) {
        return Ok(PathBuf::from(explicit));
    }
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf)),
    ];
    let in_venv = starts.iter().flatten().find_map(|start| {
        start
            .ancestors()
            .map(|dir| dir.join(".venv/bin/moto_server"))
            .find(|candidate| candidate.is_file())
    });
    if let Some(found) = in_venv {
        return Ok(found);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file())
        .ok_or(EmulatorError::NotFound)
}

/// The command that starts moto's server on `port`, in its own process group (so a
/// terminal's Ctrl-C reaches only its parent, which stops it) and killed if the parent dies.
pub fn command(program: &Path, port: u16) -> Command {
    let mut command = Command::new(program);
    command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    crate::process::detach_and_tie_to_parent(&mut command);
    command
}

/// Waits until something accepts connections on `addr`.
pub fn wait_until_listening(addr: SocketAddr, timeout: Duration) -> Result<(), EmulatorError> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(EmulatorError::NotReady(addr))
}

/// A running moto server, stopped when dropped.
pub struct Emulator {
    child: std::process::Child,
    url: String,
}

impl Emulator {
    pub fn start() -> Result<Self, EmulatorError> {
        let program = find_moto_server()?;
        let port = free_port()?;
        let child = command(&program, port)
            .spawn()
            .map_err(|source| EmulatorError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        let emulator = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        wait_until_listening(SocketAddr::from(([127, 0, 0, 1], port)), START_TIMEOUT)?;
        Ok(emulator)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Blocks until the server exits (it does not, unless killed).
    pub fn wait(&mut self) {
        let _ = self.child.wait();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
