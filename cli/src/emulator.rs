//! moto's server, the AWS emulator local runs and tests use.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Names the `moto_server` program explicitly, when it is not found by itself.
pub const MOTO_SERVER_VARIABLE: &str = "HOOKLINE_MOTO_SERVER";
/// How long moto's server may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Loaded by moto's Python at start (the file says why): a transaction copies
/// the items it writes, not whole tables, so long runs stay fast and small.
const MOTO_ADAPTATIONS: &str = include_str!("../emulator/sitecustomize.py");

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
    #[error("moto_server did not say it was listening within {START_TIMEOUT:?}")]
    NotReady,
    #[error("could not write moto's start-up file in {dir}: {source}")]
    Adaptations { dir: String, source: std::io::Error },
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

/// The command that starts moto's server on a port the OS picks (it names it on
/// stderr), in its own process group (so a terminal's Ctrl-C reaches only its
/// parent, which stops it) and killed if the parent dies.
pub fn command(program: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    crate::process::detach_and_tie_to_parent(&mut command);
    command
}

/// Reads moto's stderr until it names the address it listens on, then keeps
/// draining it in the background so the server never blocks on a full pipe (and
/// passing on what `sitecustomize.py` says, if moto was left as it is).
fn listening_url(stderr: ChildStderr) -> Result<String, EmulatorError> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut announced = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(note) = line.strip_prefix("hookline: ") {
                tracing::warn!("{note}");
            }
            if !announced && let Some(at) = line.find("Running on http://") {
                announced = true;
                let url = line[at + "Running on ".len()..].trim().to_string();
                let _ = sender.send(url);
            }
        }
    });
    receiver
        .recv_timeout(START_TIMEOUT)
        .map_err(|_| EmulatorError::NotReady)
}

/// A running moto server, stopped when dropped.
pub struct Emulator {
    child: std::process::Child,
    url: String,
}

impl Emulator {
    pub fn start() -> Result<Self, EmulatorError> {
        Self::start_with_env(&[])
    }

    /// [`Emulator::start`] with variables added to the server's environment: moto's
    /// settings, such as where its request recorder writes.
    pub fn start_with_env(env: &[(&str, &str)]) -> Result<Self, EmulatorError> {
        let program = find_moto_server()?;
        let adaptations = write_adaptations()?;
        let started = Self::spawn(&program, &adaptations, env);
        // Python read it as it started, before the server listened.
        let _ = std::fs::remove_dir_all(&adaptations);
        started
    }

    fn spawn(
        program: &Path,
        adaptations: &Path,
        env: &[(&str, &str)],
    ) -> Result<Self, EmulatorError> {
        let mut python_path = adaptations.as_os_str().to_owned();
        if let Some(others) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
            python_path.push(":");
            python_path.push(others);
        }
        let mut child = command(program)
            .env("PYTHONPATH", python_path)
            .envs(env.iter().copied())
            .spawn()
            .map_err(|source| EmulatorError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        let stderr = child.stderr.take().expect("stderr is piped");
        // Owned from here, so the server is stopped even if it never announces itself.
        let mut emulator = Self {
            child,
            url: String::new(),
        };
        emulator.url = listening_url(stderr)?;
        Ok(emulator)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's process id: benchmarks read its memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

/// A folder of its own holding [`MOTO_ADAPTATIONS`] as `sitecustomize.py`, which
/// Python imports at start from any folder on PYTHONPATH. Made anew for each
/// server (never one another user could have put there first).
fn write_adaptations() -> Result<PathBuf, EmulatorError> {
    let dir = std::env::temp_dir().join(format!(
        "hookline-emulator-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    ));
    std::fs::create_dir(&dir)
        .and_then(|()| std::fs::write(dir.join("sitecustomize.py"), MOTO_ADAPTATIONS))
        .map_err(|source| EmulatorError::Adaptations {
            dir: dir.display().to_string(),
            source,
        })?;
    Ok(dir)
}
